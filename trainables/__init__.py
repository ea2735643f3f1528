"""Ray Tune trainables: thin adapters from Tune's API to ``ngpt_tune.train.fit``."""

from trainables.ngpt import train_ngpt

__all__ = ["train_ngpt"]
