"""``write_outputs(path)``: every analysis file, written atomically into the experiment folder.

Files: ``trials.parquet``, ``history.parquet``, ``best_config.yaml``, ``plots/*.png`` and,
last, ``summary.json`` (so a present summary means the rest is there). For a remote
experiment the files are written into the local copy, then uploaded next to the experiment.
"""

from __future__ import annotations

import os
from pathlib import Path

from analysis.io import write_json, write_parquet, write_yaml
from analysis.load import Experiment, load_experiment
from analysis.location import upload
from analysis.plots import write_plots
from analysis.schema import HISTORY_SCHEMA, to_table
from analysis.summary import BEST_CONFIG_FILE, summarize

SUMMARY_FILE = "summary.json"
TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
PLOTS_DIR = "plots"


def write_outputs(path: str | os.PathLike | Experiment, *, plots: bool = True) -> Path:
    """Analyse the experiment at ``path`` and write its outputs; returns ``summary.json``'s path.

    Example:
        >>> summary_path = write_outputs("ngpt_results/alpha_lr")  # doctest: +SKIP
        >>> print(format_ranking(summary_path))  # doctest: +SKIP
    """
    exp = path if isinstance(path, Experiment) else load_experiment(path)
    root = exp.path
    summary = summarize(exp)
    written = [
        write_parquet(root / TRIALS_FILE, to_table(exp.trials, exp.trials_schema)),
        write_parquet(root / HISTORY_FILE, to_table(exp.history, HISTORY_SCHEMA)),
    ]
    if summary["best"] is not None:
        written.append(write_yaml(root / BEST_CONFIG_FILE, summary["best"]["config"]))
    if plots:
        written += write_plots(exp, summary, root / PLOTS_DIR)
    summary_path = root / SUMMARY_FILE
    summary["outputs"] = [p.relative_to(root).as_posix() for p in [*written, summary_path]]
    write_json(summary_path, summary)
    if exp.location is not None and exp.location.uri:
        upload(exp.location, [*written, summary_path])
    return summary_path
