"""The experiment folder: what ngpt-tune writes where, and the campaign record.

An experiment folder is Ray Tune's ``storage_path/name``. The runner, the trainable and
``analysis/`` read and write it through the names below, and nothing else::

    campaign.json             the campaign record (:func:`write_campaign`, before any trial):
                              the request that rebuilds the spec, and the stage list
                              (:class:`Stage`), the one record of where the campaign is
    confirm/, rung<i>/, target/  a stage's own experiment folder, with a campaign.json
                              that points back (``campaign_root``)
    experiment_state-*.json   Tune's own state: each trial's final status and failure count
    trial_<id>/               one per trial (:func:`trial_dirname`):
        params.json             the searched values (Tune)
        result.json             one JSON line per report (Tune)
        provenance.json         the resolved config, seed, code and hardware (the trainable)
        error.txt               the last failure's traceback, if the trial ever failed (Tune)
        checkpoint_*/           Tune's checkpoints
    optuna_journal.log        the Optuna study (``searcher: optuna``; :data:`JOURNAL_FILE`)
    summary.json, trials.parquet, history.parquet, best_config.yaml, plots/, report.html
                              the analysis (``python -m ngpt_tune analyze``)

Nothing here imports Ray or torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ngpt_tune.errors import NgptTuneError
from ngpt_tune.files import is_remote, join, list_folders, local_path, read_file, write_file

# ---- file names ---------------------------------------------------------------------------
CAMPAIGN_FILE = "campaign.json"
TUNE_STATE_GLOB = "experiment_state-*.json"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
PROVENANCE_FILE = "provenance.json"
ERROR_FILE = "error.txt"
CHECKPOINT_PREFIX = "checkpoint_"
TRIAL_PREFIX = "trial_"
SUMMARY_FILE = "summary.json"
TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
BEST_CONFIG_FILE = "best_config.yaml"  # the confirmed winner when there is a confirmation
SEARCH_BEST_CONFIG_FILE = "search_best_config.yaml"  # the search's own best, then
PLOTS_DIR = "plots"
JOURNAL_FILE = "optuna_journal.log"  # the Optuna study of an experiment (searcher: optuna)

CONFIRM_DIR = "confirm"  # a confirmation stage's folder inside the experiment it confirms

# ---- keys of a trial's configuration ------------------------------------------------------
SEED_KEY = "train.seed"
VARIANT_KEY = "variant"
TRIAL_INDEX_KEY = "__trial_index__"  # set by Ray's Repeater on repeated Optuna configurations
CONFIRM_ARM_KEY = "confirm_arm"  # a confirmation trial's arm: a label, not a config key

# ---- the metric a campaign optimises: a key of every report -------------------------------
Metric = Literal["val_loss", "train_loss"]  # the spec's `metric:`
Mode = Literal["min", "max"]
METRICS, MODES = get_args(Metric), get_args(Mode)
DEFAULT_METRIC, DEFAULT_MODE = "val_loss", "min"


def final_column(metric: str) -> str:
    """The trials-table column holding ``metric``'s last reported value (``final_val_loss``)."""
    return f"final_{metric}"


def trial_dirname(trial_id: str) -> str:
    return f"{TRIAL_PREFIX}{trial_id}"


def trial_id_from_dirname(name: str) -> str:
    """The trial id in a folder named by :func:`trial_dirname` (else the name itself)."""
    return name.removeprefix(TRIAL_PREFIX)


# ---- the trials' reports ------------------------------------------------------------------
# a trial whose memory allocation was refused (out of memory) ends with one last report that
# holds these two keys: True, and the error's line. Tune does not retry it; the analysis marks
# it ``infeasible`` and Optuna is told it violates a constraint (ngpt_tune.search).
INFEASIBLE_KEY = "infeasible"
ERROR_KEY = "error"


def parse_reports(text: str) -> list[dict[str, Any]]:
    """The JSON lines of a ``result.json``; a line cut short by a crash is skipped."""
    reports = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            report = json.loads(line)  # accepts NaN / Infinity, as Python's json writes them
        except json.JSONDecodeError:
            continue
        if isinstance(report, dict):
            reports.append(report)
    return reports


def number_or_none(value: Any) -> float | None:
    """A report's value as a float: None for a missing value, a boolean or text."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def trial_reports(experiment: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """Every trial's reports so far, by trial id, read from ``experiment`` (folder or URI)."""
    base = os.fspath(experiment)
    out = {}
    for name in list_folders(base):
        if not name.startswith(TRIAL_PREFIX):
            continue
        try:
            text = read_file(join(join(base, name), RESULT_FILE)).decode(errors="replace")
        except FileNotFoundError:
            continue
        out[trial_id_from_dirname(name)] = parse_reports(text)
    return out


# ---- the campaign record and its stage list -------------------------------------------------
# (what the record holds: ngpt_tune.request.campaign_record)
# ---- the stage list: where a campaign is ---------------------------------------------------
STAGES_KEY = "stages"  # campaign.json: the ordered stages, each a :class:`Stage` record
STATUSES = ("pending", "running", "interrupted", "done")
KINDS = ("search", "confirmation", "ladder_size", "ladder_fit", "target_search")


@dataclass
class Stage:
    """One stage of a campaign, as ``campaign.json`` records it: its ``name``, ``kind`` (one of
    :data:`KINDS`), ``folder`` (relative to the campaign's folder; "." is the campaign's own),
    ``status`` (:data:`STATUSES`), ``plan`` (what it runs, frozen before its first trial; None
    until it starts) and ``of`` (the stage it confirms, for a confirmation)."""

    name: str
    kind: str
    folder: str
    status: str = "pending"
    plan: dict[str, Any] | None = None
    of: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise NgptTuneError(f"stage {self.name!r}: unknown kind {self.kind!r}")
        if self.status not in STATUSES:
            raise NgptTuneError(f"stage {self.name!r}: unknown status {self.status!r}")

    @property
    def done(self) -> bool:
        return self.status == "done"

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_stages(record: dict[str, Any]) -> list[Stage]:
    """The stages of a campaign record. Records written before the stage list existed (a
    search, maybe linked to its confirmation; a ladder with ``ladder_rungs_done``) are read
    as the stages they ran."""
    if STAGES_KEY in record:
        return [Stage(**entry) for entry in record[STAGES_KEY]]
    if "ladder_rungs_done" in record:
        done = set(record["ladder_rungs_done"])
        sizes = ((record.get("spec") or {}).get("ladder") or {}).get("sizes") or []
        count = max(len(sizes), max(done, default=-1) + 1)
        if record.get("smoke"):
            count = max(count, 3)  # --smoke ran three tiny sizes whatever the spec listed
        return [*(Stage(f"rung{i}", "ladder_size", f"rung{i}",
                        "done" if i in done else "pending", {"rung": i}) for i in range(count)),
                Stage("fit", "ladder_fit", ".", "pending")]
    linked = record.get("confirmation")
    if linked:
        plan = {k: v for k, v in linked.items() if k != "status"}
        status = "done" if linked.get("status") == "done" else "interrupted"
        return [Stage("search", "search", ".", "done"),
                Stage("confirm", "confirmation", linked.get("path", CONFIRM_DIR), status, plan,
                      of="search")]
    return [Stage("search", "search", ".", "running")]


def write_stages(experiment: str | os.PathLike, stages: list[Stage]) -> None:
    """Record ``stages`` in ``experiment``'s ``campaign.json`` (the only place that says where
    a campaign is)."""
    record = read_campaign(experiment)
    record[STAGES_KEY] = [s.to_record() for s in stages]
    write_campaign(experiment, record)


def write_campaign(experiment: str | os.PathLike, record: dict[str, Any]) -> None:
    """Write ``campaign.json`` into ``experiment`` (a folder or a URI), atomically where local."""
    write_file(join(os.fspath(experiment), CAMPAIGN_FILE),
               json.dumps(record, indent=2, default=str))


def read_campaign(experiment: str | os.PathLike) -> dict[str, Any]:
    """``campaign.json`` of ``experiment`` (a folder or a URI); a folder without one is not an
    ngpt-tune experiment (NgptTuneError)."""
    text = os.fspath(experiment)
    where = text if is_remote(text) else str(local_path(text))
    try:
        record = json.loads(read_file(join(where, CAMPAIGN_FILE)))
    except FileNotFoundError:
        raise NgptTuneError(f"{text}: not an ngpt-tune experiment folder ({CAMPAIGN_FILE} is "
                            "missing)") from None
    except json.JSONDecodeError as err:
        raise NgptTuneError(f"{text}/{CAMPAIGN_FILE}: not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise NgptTuneError(f"{text}/{CAMPAIGN_FILE}: expected a JSON object")
    return record


def has_campaign(experiment: str | os.PathLike) -> bool:
    """Whether ``experiment`` (a folder or a URI) holds a campaign's record."""
    try:
        read_file(join(os.fspath(experiment), CAMPAIGN_FILE))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    return True
