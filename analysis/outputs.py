"""``write_outputs(path)``: every analysis file, written atomically into the experiment folder.

Files: ``trials.parquet``, ``history.parquet``, ``best_config.yaml``, ``plots/*.png``,
``report.html`` (with the plots) and, last, ``summary.json`` (so a present summary means the
rest is there). For a remote experiment the files are written into the local copy, then
uploaded next to the experiment. With a confirmation stage (``confirm/``, or where
``campaign.json`` points), ``best_config.yaml`` is the confirmed winner and the search's own
best goes to ``search_best_config.yaml``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from analysis.confirm import find_confirmation
from analysis.html_report import REPORT_FILE, write_report
from analysis.io import write_json, write_parquet, write_yaml
from analysis.ladder import write_ladder_files
from analysis.ladder_fit import fit_folders
from analysis.load import Experiment, load_experiment
from analysis.location import upload
from analysis.plots import write_plots
from analysis.schema import HISTORY_SCHEMA, to_table
from analysis.stages import CampaignView, campaign_view, has_trials, stage_sections
from analysis.summary import summarize
from ngpt_tune.experiment import (
    BEST_CONFIG_FILE,
    HISTORY_FILE,
    PLOTS_DIR,
    SEARCH_BEST_CONFIG_FILE,
    SUMMARY_FILE,
    TRIALS_FILE,
)


def write_outputs(
    path: str | os.PathLike | Experiment,
    *,
    plots: bool = True,
    confirmation: str | os.PathLike | Experiment | None = None,
) -> Path:
    """Analyse the experiment at ``path`` and write its outputs; returns ``summary.json``'s path.

    ``confirmation``: the confirmation stage's experiment (a folder or a loaded one); by
    default the one stored with the search, if any.

    Example:
        >>> summary_path = write_outputs("ngpt_results/alpha_lr")  # doctest: +SKIP
        >>> print(format_ranking(summary_path))  # doctest: +SKIP
    """
    exp = path if isinstance(path, Experiment) else load_experiment(path)
    root = exp.path
    view = campaign_view(root)
    if view.here is None and view.is_ladder:
        return _write_ladder(exp, view, plots=plots)
    if confirmation is None:
        confirmation = find_confirmation(exp)
    elif not isinstance(confirmation, Experiment):
        confirmation = load_experiment(confirmation)
    summary = summarize(exp, confirmation=confirmation)
    if view.root == root and view.here is not None:
        summary["stages"] = stage_sections(view, {view.here.name: summary})
    written = [
        write_parquet(root / TRIALS_FILE, to_table(exp.trials, exp.trials_schema)),
        write_parquet(root / HISTORY_FILE, to_table(exp.history, HISTORY_SCHEMA)),
    ]
    winner = (summary.get("confirm") or {}).get("winner")
    if summary["best"] is not None:
        name = SEARCH_BEST_CONFIG_FILE if winner else BEST_CONFIG_FILE
        written.append(write_yaml(root / name, summary["best"]["config"]))
    if winner:
        written.append(write_yaml(root / BEST_CONFIG_FILE, winner["config"]))
    if plots:
        written += write_plots(exp, summary, root / PLOTS_DIR)
        written.append(write_report(exp, summary, root / REPORT_FILE))
    return _write_summary(exp, summary, written)


def _write_summary(exp: Experiment, summary: dict, written: list[Path]) -> Path:
    """summary.json, last (a present summary means the rest is there); uploaded with the rest
    for a remote experiment."""
    root = exp.path
    summary_path = root / SUMMARY_FILE
    summary["outputs"] = [p.relative_to(root).as_posix() for p in [*written, summary_path]]
    write_json(summary_path, summary)
    if exp.location is not None and exp.location.uri:
        upload(exp.location, [*written, summary_path])
    return summary_path


def _write_ladder(exp: Experiment, view: CampaignView, *, plots: bool) -> Path:
    """A ladder campaign's folder: each size's and the target search's own outputs in their
    folders, then the campaign's summary.json: the target search's summary (else the largest
    size's) with the ``ladder`` fit and every stage's section; ``ladder.png`` and
    ``target_spec.yaml``."""
    summaries, written = {}, []
    for stage in view.stages:
        folder = view.path(stage)
        if stage.kind in ("ladder_size", "target_search") and has_trials(folder):
            path = write_outputs(folder, plots=plots)
            summaries[stage.name] = json.loads(path.read_text())
            written += [folder / out for out in summaries[stage.name].get("outputs", [])]
    answer = next((n for n in ("target", *reversed([s.name for s in view.stages]))
                   if n in summaries), None)
    summary = dict(summaries[answer]) if answer else {}
    section = fit_folders(view.root)
    summary.update(campaign=exp.name, experiment=exp.display_path, answer_stage=answer,
                   ladder=section, stages=stage_sections(view, summaries))
    if section is not None:
        written += write_ladder_files(view.root, view.record, section)
    return _write_summary(exp, summary, written)
