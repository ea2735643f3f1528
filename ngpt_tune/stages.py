"""The kinds of stage a campaign is made of, each behind one small interface.

A campaign (:class:`Campaign`) is an ordered list of stages recorded in its ``campaign.json``
(:class:`ngpt_tune.experiment.Stage`). Every kind answers the same four questions:

- ``plan``: what the stage will run, frozen in the record before its first trial;
- ``spec``: the :class:`CampaignSpec` its trials are built from;
- ``tune_parts``: Tune's param_space, search_alg, scheduler and num_samples, or None for a
  stage that runs no trials (the ladder's fit);
- ``after``: what happens once it is done (the ladder's outputs, a size's own analysis).

``ngpt_tune.campaign`` runs the first stage not done, then the next: ``run``, ``resume`` and
``confirm`` are that one loop.

=================  ==========  =========================================================
kind               folder      runs
=================  ==========  =========================================================
search             ``.``       the spec's search (its searcher and scheduler)
confirmation       ``confirm`` the top configurations of the stage it confirms, fresh seeds
ladder_size        ``rung<i>`` the search at size i of a ladder
ladder_fit         ``.``       no trials: the optimum's trend with size, the prediction
target_search      ``target``  the search at the ladder's target size around the prediction
=================  ==========  =========================================================
"""

from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass
from typing import Any

from ray import tune

from analysis import format_ranking, write_outputs
from analysis.ladder_fit import fit_folders
from ngpt_tune.confirm_stage import ConfirmPlan, confirm_settings, plan_confirmation
from ngpt_tune.errors import NgptTuneError
from ngpt_tune.experiment import CONFIRM_DIR, Stage, write_campaign, write_stages
from ngpt_tune.files import join
from ngpt_tune.ladder_plan import active_ladder, size_spec, target_ranges, target_search
from ngpt_tune.provenance import provenance
from ngpt_tune.request import campaign_record
from ngpt_tune.runner import build_tuner, interrupted, search_parts
from ngpt_tune.spec import CampaignSpec, SchedulerSpec


@dataclass
class Campaign:
    """A campaign being run: its folder (path or URI), the spec its request means, its stages
    (as recorded), and the request and command to record in the stages' folders."""

    folder: str
    spec: CampaignSpec
    stages: list[Stage]
    request: dict[str, Any]
    command: str

    def path(self, stage: Stage) -> str:
        return self.folder if stage.folder == "." else join(self.folder, stage.folder)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def save(self) -> None:
        write_stages(self.folder, self.stages)

    def spec_of(self, stage: Stage) -> CampaignSpec:
        return KINDS[stage.kind].spec(self, stage)


class StageKind:
    """A kind of stage whose trials are one Ray Tune experiment in the stage's folder."""

    def plan(self, c: Campaign, stage: Stage) -> dict[str, Any]:
        return stage.plan or {}

    def spec(self, c: Campaign, stage: Stage) -> CampaignSpec:
        return c.spec

    def tune_parts(self, c: Campaign, stage: Stage, spec: CampaignSpec) -> dict[str, Any] | None:
        return search_parts(spec, c.path(stage))

    def folder_record(self, c: Campaign, stage: Stage, spec: CampaignSpec) -> dict[str, Any]:
        """The stage folder's own ``campaign.json`` (for its analysis; not the stage list)."""
        record = campaign_record(spec, request=None, command=c.command, provenance=provenance())
        record.update(stage=stage.kind, stage_name=stage.name,
                      campaign_root=posixpath.relpath(".", stage.folder))
        return record

    def start_line(self, c: Campaign, stage: Stage, spec: CampaignSpec, resuming: bool) -> str:
        verb = "resuming" if resuming else "searching"
        return f"ngpt-tune: stage '{stage.name}' ({stage.kind}): {verb}, results in {c.path(stage)}"

    def run(self, c: Campaign, stage: Stage, *, resuming: bool) -> bool:
        """Run (or continue) the stage's Tune experiment; False when it was interrupted."""
        spec = self.spec(c, stage)
        folder = c.path(stage)
        storage, name = folder.rstrip("/").rsplit("/", 1)
        parts = self.tune_parts(c, stage, spec)
        restore = tune.Tuner.can_restore(folder)
        if not restore and stage.folder != ".":
            write_campaign(folder, self.folder_record(c, stage, spec))
        print(self.start_line(c, stage, spec, restore), flush=True)
        results = build_tuner(spec, storage=storage, name=name, restore=restore, parts=parts,
                              title=self.title(c, stage, spec)).fit()
        return not interrupted(results)

    def title(self, c: Campaign, stage: Stage, spec: CampaignSpec) -> str:
        return spec.name

    def after(self, c: Campaign, stage: Stage) -> None:
        return None


class SearchKind(StageKind):
    def start_line(self, c: Campaign, stage: Stage, spec: CampaignSpec, resuming: bool) -> str:
        if resuming:
            return f"ngpt-tune: resuming '{spec.name}' from {c.folder}"
        return f"ngpt-tune: searching, {spec.trial_count()} trials"


class ConfirmationKind(StageKind):
    """The top configurations of the stage ``stage.of`` re-run with fresh seeds."""

    def plan(self, c: Campaign, stage: Stage) -> dict[str, Any]:
        searched = c.stage(stage.of)
        spec = c.spec_of(searched)
        relative = posixpath.relpath(stage.folder, searched.folder)
        plan = plan_confirmation(c.path(searched), spec, confirm_settings(spec), path=relative)
        return plan.to_record()

    def spec(self, c: Campaign, stage: Stage) -> CampaignSpec:
        searched = c.spec_of(c.stage(stage.of))
        return dataclasses.replace(searched, name=f"{searched.name}-confirm",
                                   scheduler=SchedulerSpec(name="fifo"))

    def tune_parts(self, c: Campaign, stage: Stage, spec: CampaignSpec) -> dict[str, Any]:
        return ConfirmPlan.from_record(stage.plan).tune_parts(spec)

    def folder_record(self, c: Campaign, stage: Stage, spec: CampaignSpec) -> dict[str, Any]:
        plan = ConfirmPlan.from_record(stage.plan)
        record = super().folder_record(c, stage, spec)
        searched = c.stage(stage.of)
        record.update(stage="confirm", search_experiment=posixpath.relpath(
            searched.folder, stage.folder), search_keys=plan.keys,
            trial_count=plan.trial_count(), asha_budgets=None, plan=plan.to_record())
        return record

    def start_line(self, c: Campaign, stage: Stage, spec: CampaignSpec, resuming: bool) -> str:
        if resuming:
            return f"ngpt-tune: resuming the confirmation stage in {c.path(stage)}"
        return (f"ngpt-tune: confirmation stage: {ConfirmPlan.from_record(stage.plan).describe()}"
                f", results in {c.path(stage)}")

    def title(self, c: Campaign, stage: Stage, spec: CampaignSpec) -> str:
        return f"{c.spec_of(c.stage(stage.of)).name} confirmation"


class LadderSizeKind(StageKind):
    """The search at one size of a ladder (``plan``: ``{"rung": i}``)."""

    def spec(self, c: Campaign, stage: Stage) -> CampaignSpec:
        return size_spec(c.spec, active_ladder(c.spec), stage.plan["rung"])

    def start_line(self, c: Campaign, stage: Stage, spec: CampaignSpec, resuming: bool) -> str:
        i = stage.plan["rung"]
        size = ", ".join(f"{k.removeprefix('model.')}={v}"
                         for k, v in active_ladder(c.spec).sizes[i].items())
        return f"ngpt-tune: rung {i} ({size}): {'resuming' if resuming else 'searching'}"

    def after(self, c: Campaign, stage: Stage) -> None:
        summary = write_outputs(c.path(stage))  # the size's own ranking, in its folder
        print(format_ranking(summary))


class LadderFitKind(StageKind):
    """No trials: each size's optimum, their trend with size and the target's prediction,
    written into the campaign's summary.json, ladder.png and target_spec.yaml."""

    def tune_parts(self, c: Campaign, stage: Stage, spec: CampaignSpec) -> None:
        return None

    def run(self, c: Campaign, stage: Stage, *, resuming: bool) -> bool:
        section = fit_folders(c.folder)
        if section is None:
            raise NgptTuneError(f"{c.folder}: a size of the ladder has not finished")
        predicted = ", ".join(f"{k} {f['prediction']:.4g}" for k, f in section["fits"].items())
        print(f"ngpt-tune: ladder fit: at the target size, {predicted or 'nothing to fit'}",
              flush=True)
        return True


class TargetSearchKind(StageKind):
    """The search at the ladder's target size, around the prediction (``plan``: the ranges)."""

    def plan(self, c: Campaign, stage: Stage) -> dict[str, Any]:
        ladder = active_ladder(c.spec)
        section = fit_folders(c.folder)
        if section is None:
            raise NgptTuneError(f"{c.folder}: the ladder's fit found no optimum to search around")
        ranges = target_ranges(c.spec, ladder, section["fits"])
        return {"ranges": ranges, "prediction": {k: f["prediction"]
                                                 for k, f in section["fits"].items()}}

    def spec(self, c: Campaign, stage: Stage) -> CampaignSpec:
        return target_search(c.spec, active_ladder(c.spec), stage.plan["ranges"],
                             stage.plan.get("prediction"))

    def start_line(self, c: Campaign, stage: Stage, spec: CampaignSpec, resuming: bool) -> str:
        if resuming:
            return f"ngpt-tune: resuming the target search in {c.path(stage)}"
        ranges = ", ".join(f"{k} in [{v['loguniform'][0]:.4g}, {v['loguniform'][1]:.4g}]"
                           for k, v in stage.plan["ranges"].items())
        return (f"ngpt-tune: target search around the prediction ({ranges}), "
                f"{spec.trial_count()} trials, results in {c.path(stage)}")


KINDS: dict[str, StageKind] = {
    "search": SearchKind(),
    "confirmation": ConfirmationKind(),
    "ladder_size": LadderSizeKind(),
    "ladder_fit": LadderFitKind(),
    "target_search": TargetSearchKind(),
}


def stage_list(spec: CampaignSpec) -> list[Stage]:
    """The stages a spec runs, in order, none started."""
    if spec.ladder is None:
        stages = [Stage("search", "search", ".")]
        if spec.confirm is not None:
            stages.append(Stage("confirm", "confirmation", CONFIRM_DIR, of="search"))
        return stages
    ladder = active_ladder(spec)
    stages = [Stage(f"rung{i}", "ladder_size", f"rung{i}", plan={"rung": i})
              for i in range(len(ladder.sizes))]
    stages.append(Stage("fit", "ladder_fit", "."))
    if ladder.target_search:
        stages += [Stage("target", "target_search", "target"),
                   Stage("target-confirm", "confirmation", f"target/{CONFIRM_DIR}", of="target")]
    return stages
