"""Analysis of a finished (or interrupted) campaign, from its experiment folder alone.

No Ray, no GPU: ``load_experiment`` reads the trial folders into two DataFrames,
``summarize`` ranks and tests them, ``write_outputs`` writes ``trials.parquet``,
``history.parquet``, ``summary.json``, ``best_config.yaml`` and ``plots/*.png`` atomically,
and ``format_ranking`` prints the ranking for a terminal.

Example:
    >>> from analysis import format_ranking, write_outputs
    >>> print(format_ranking(write_outputs("ngpt_results/alpha_lr")))  # doctest: +SKIP
"""

from analysis.load import Experiment, load_experiment
from analysis.outputs import write_outputs
from analysis.report import format_ranking
from analysis.schema import FIXED_TRIAL_COLUMNS, HISTORY_SCHEMA, STATUSES, trials_schema
from analysis.stats import describe, verdict, welch
from analysis.summary import summarize
from ngpt_tune.experiment import HISTORY_FILE, SUMMARY_FILE, TRIALS_FILE

__all__ = [
    "FIXED_TRIAL_COLUMNS",
    "HISTORY_FILE",
    "HISTORY_SCHEMA",
    "STATUSES",
    "SUMMARY_FILE",
    "TRIALS_FILE",
    "Experiment",
    "describe",
    "format_ranking",
    "load_experiment",
    "summarize",
    "trials_schema",
    "verdict",
    "welch",
    "write_outputs",
]
