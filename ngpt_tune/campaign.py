"""``run``, ``resume`` and ``confirm``: one loop over a campaign's recorded stages.

``run`` writes ``campaign.json`` (the request that rebuilds the spec, and the stage list) and
runs the stages in order; ``resume`` runs the first stage not done, then the rest (the same
loop: ``Tuner(...).fit()`` for a stage not started, ``Tuner.restore(...).fit()`` for one Tune
had saved); ``confirm`` appends a confirmation stage and runs it. A stage interrupted (Ctrl-C,
SIGTERM) is recorded as such, and the campaign ends with the command that continues it.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

from analysis import format_ranking, write_outputs
from ngpt_tune.confirm_stage import confirm_settings, free_folder, plan_confirmation, same_settings
from ngpt_tune.errors import CampaignFailed, NgptTuneError
from ngpt_tune.experiment import (
    CAMPAIGN_FILE,
    CONFIRM_DIR,
    STAGES_KEY,
    Stage,
    read_campaign,
    read_stages,
    write_campaign,
)
from ngpt_tune.files import is_remote, join, local_path
from ngpt_tune.provenance import provenance
from ngpt_tune.request import RunRequest, build_spec, campaign_record
from ngpt_tune.runner import RunOptions, check_devices, init_ray, resolve_storage, tune_environment
from ngpt_tune.spec import CampaignSpec
from ngpt_tune.stages import KINDS, Campaign, stage_list
from ngpt_tune.warm_start import warm_trials


def run_campaign(spec: CampaignSpec, options: RunOptions, *, request: RunRequest,
                 command: str | None = None) -> str:
    """Run ``spec`` (``build_spec(request)``); returns the experiment folder (path or URI).
    ``command``, the command line that started it, is recorded in ``campaign.json``."""
    command = command or f"python -m ngpt_tune run {request.spec_path}"
    check_devices(spec, options)
    warm_trials(spec)  # a bad warm-start source or first point: one line, nothing started
    tune_environment()
    storage = resolve_storage(options.storage)
    name = options.name or f"{spec.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    experiment = join(storage, name)
    stages = stage_list(spec)
    if spec.ladder is not None:
        sizes = sum(s.kind == "ladder_size" for s in stages)
        print(f"ngpt-tune: ladder '{spec.name}', {sizes} rungs x {spec.trial_count()} trials, "
              f"results in {experiment}", flush=True)
    else:
        print(f"ngpt-tune: campaign '{spec.name}', {spec.trial_count()} trials, results in "
              f"{experiment}", flush=True)
    init_ray(options)
    record = campaign_record(spec, request=request.to_record(), command=command,
                             provenance=provenance())
    record[STAGES_KEY] = [s.to_record() for s in stages]
    write_campaign(experiment, record)
    return _run(Campaign(experiment, spec, stages, request.to_record(), command))


def resume_campaign(experiment: str, options: RunOptions) -> str:
    """Continue a stopped or killed campaign from its folder: the first stage not done."""
    tune_environment()
    c = _open(experiment, command=f"python -m ngpt_tune resume {experiment}")
    check_devices(c.spec, options)
    init_ray(options)
    return _run(c)


def confirm_campaign(experiment: str, options: RunOptions, *, top_k: int | None = None,
                     seeds: int | None = None, baseline: str | None = None,
                     command: str | None = None) -> str:
    """``confirm``: a confirmation stage for the campaign's last search (a ladder's: its target
    search), with the spec's ``confirm:`` settings (or the defaults) and the command line's on
    top. The same settings as a recorded confirmation of that search continue it; others get
    a new stage in a new folder (``confirm-2``...)."""
    tune_environment()
    c = _open(experiment, command=command or f"python -m ngpt_tune confirm {experiment}")
    searched = _last_search(c)
    spec = c.spec_of(searched)
    settings = confirm_settings(spec, top_k=top_k, seeds=seeds, baseline=baseline)
    same = [s for s in c.stages if s.kind == "confirmation" and s.of == searched.name
            and s.plan is not None and same_settings(s.plan, settings)]
    if not same:
        taken = {s.folder for s in c.stages}
        inside = "" if searched.folder == "." else f"{searched.folder}/"
        folder = free_folder(taken, f"{inside}{CONFIRM_DIR}")
        relative = folder.removeprefix(inside)
        plan = plan_confirmation(c.path(searched), spec, settings, path=relative)
        name = free_folder({s.name for s in c.stages}, f"{searched.name}-confirm"
                           if searched.name != "search" else "confirm")
        c.stages.append(Stage(name, "confirmation", folder, plan=plan.to_record(),
                              of=searched.name))
        c.save()
    check_devices(c.spec, options)
    init_ray(options)
    return _run(c)


def _run(c: Campaign) -> str:
    """Run every stage not done, in order; then analyse and report."""
    for stage in c.stages:
        if stage.done:
            continue
        kind = KINDS[stage.kind]
        resuming = stage.status != "pending"
        if stage.plan is None:
            try:
                stage.plan = kind.plan(c, stage)
            except NgptTuneError as err:
                if stage.kind != "confirmation":
                    raise
                print(f"ngpt-tune: no confirmation stage: {err}", flush=True)
                stage.status, stage.plan = "done", {"skipped": str(err)}
                c.save()
                continue
        stage.status = "running"
        c.save()
        if not kind.run(c, stage, resuming=resuming):
            stage.status = "interrupted"
            c.save()
            return _finish(c, interrupted=True)
        stage.status = "done"
        c.save()
        kind.after(c, stage)
    return _finish(c, interrupted=False)


def _finish(c: Campaign, *, interrupted: bool) -> str:
    """Analyse the campaign, print the ranking, say where everything is; CampaignFailed where
    every trial errored (a trainable that cannot import, a spec no trial can run)."""
    summary = None
    try:
        summary_path = write_outputs(c.folder)
        print(format_ranking(summary_path))
        print(f"\nsummary: {summary_path}")
        summary = json.loads(summary_path.read_text())
    except Exception as err:  # the experiment itself is saved; the analysis can be re-run
        print(f"ngpt-tune: analysis failed ({type(err).__name__}: {err}); run "
              f"`python -m ngpt_tune analyze {c.folder}`", file=sys.stderr)
    if interrupted:
        print(f"interrupted: resume with `python -m ngpt_tune resume {c.folder}`")
    print(f"results: {c.folder}")
    counts = (summary or {}).get("counts") or {}
    if not interrupted and counts.get("total") and counts.get("errored") == counts["total"]:
        first = next((f for f in summary.get("failed", []) if f.get("error")), {})
        error = " ".join(str(first.get("error") or "no error recorded").split())[:300]
        raise CampaignFailed(f"every trial failed ({counts['total']} errored); the first: "
                             f"trial {first.get('trial_id', '?')}: {error}")
    return c.folder


def _open(experiment: str, *, command: str) -> Campaign:
    """The campaign in ``experiment`` (absolute, or its URI), as recorded: its request rebuilt
    into the spec, its stages (records written before the stage list are read as theirs)."""
    experiment = experiment if is_remote(experiment) else str(local_path(experiment))
    record = read_campaign(experiment)
    if "request" not in record:
        raise NgptTuneError(f"{experiment}: {CAMPAIGN_FILE} was written by an older ngpt-tune "
                            "(it holds no request); start the campaign again with `run`")
    spec = build_spec(RunRequest.from_record(record["request"]))
    return Campaign(experiment, spec, read_stages(record), record["request"], command)


def _last_search(c: Campaign) -> Stage:
    """The stage ``confirm`` confirms: the last search (or target search)."""
    searches = [s for s in c.stages if s.kind in ("search", "target_search")]
    if not searches:
        raise NgptTuneError(f"{c.folder}: no search to confirm (a ladder without its target "
                            "search: add `target_search: true` to its ladder: section and "
                            "resume it)")
    return searches[-1]
