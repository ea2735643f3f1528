"""A campaign folder's stages, as the analysis reads them: which stage a folder is, where its
confirmation is, and summary.json's ``stages`` section (one entry per stage).

The stage list lives in the campaign's own ``campaign.json`` (``ngpt_tune.experiment``); a
stage's sub-folder (``confirm/``, ``rung0/``, ``target/``) holds a record of its own that
points back at the campaign (``campaign_root``), so any folder can be analysed alone.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ngpt_tune.errors import NgptTuneError
from ngpt_tune.experiment import (
    CONFIRM_DIR,
    RESULT_FILE,
    STAGES_KEY,
    TRIAL_PREFIX,
    Stage,
    read_campaign,
    read_stages,
)

TUNE_KINDS = ("search", "confirmation", "ladder_size", "target_search")


@dataclass
class CampaignView:
    """A folder seen from its campaign: ``root`` (the campaign's folder), its ``stages``, and
    ``here``, the stage whose folder this is (None: the campaign's own folder holds no trials
    of its own, as a ladder's)."""

    root: Path
    record: dict[str, Any]
    stages: list[Stage]
    here: Stage | None

    @property
    def is_ladder(self) -> bool:
        return any(s.kind == "ladder_size" for s in self.stages)

    def path(self, stage: Stage) -> Path:
        return self.root / stage.folder

    def confirmation_of(self, stage: Stage | None) -> Path | None:
        """The folder of the latest confirmation of ``stage`` that has trials, if any."""
        if stage is None:
            return None
        for other in reversed(self.stages):
            if other.kind == "confirmation" and other.of == stage.name and has_trials(
                    self.path(other)):
                return self.path(other)
        legacy = self.path(stage) / CONFIRM_DIR  # a record from before the stage list
        if STAGES_KEY not in self.record and has_trials(legacy):
            return legacy
        return None


def campaign_view(folder: str | os.PathLike) -> CampaignView:
    """The campaign around ``folder`` (a local folder holding a ``campaign.json``)."""
    folder = Path(folder)
    record = read_campaign(folder)
    if "campaign_root" in record or record.get("stage") == "confirm":
        relative = record.get("campaign_root") or record.get("search_experiment") or ".."
        root = (folder / relative).resolve()
        try:
            stages = read_stages(read_campaign(root))
        except NgptTuneError:  # a stage folder copied away from its campaign: analyse it alone
            return CampaignView(folder, record, [], None)
        where = posixpath.normpath(os.path.relpath(folder.resolve(), root))
        here = next((s for s in stages if posixpath.normpath(s.folder) == where), None)
        return CampaignView(root, read_campaign(root), stages, here)
    stages = read_stages(record)
    here = next((s for s in stages if s.folder == "." and s.kind in TUNE_KINDS), None)
    return CampaignView(folder, record, stages, here)


def has_trials(folder: Path) -> bool:
    return folder.is_dir() and any(
        (t / RESULT_FILE).is_file() for t in folder.glob(f"{TRIAL_PREFIX}*"))


def stage_sections(view: CampaignView, summaries: dict[str, dict[str, Any]]) -> list[dict]:
    """summary.json's ``stages``: per stage its name, kind, folder, status and plan, and, for a
    stage whose summary is known (``summaries`` by stage name), its counts, best and top of
    the ranking."""
    out = []
    for stage in view.stages:
        entry: dict[str, Any] = {"name": stage.name, "kind": stage.kind, "folder": stage.folder,
                                 "status": stage.status}
        if stage.of:
            entry["of"] = stage.of
        if stage.kind == "target_search" and stage.plan:
            entry["plan"] = stage.plan
        summary = summaries.get(stage.name)
        if summary:
            best = summary.get("best") or {}
            entry.update(counts=summary.get("counts"),
                         ranking=(summary.get("ranking_by_config") or [])[:5],
                         best={k: best.get(k) for k in ("group", "params", "mean", "n")}
                         if best else None)
            if (summary.get("confirm") or {}).get("winner"):
                winner = summary["confirm"]["winner"]
                entry["confirmed_winner"] = {k: winner.get(k) for k in ("arm", "mean", "n")}
        out.append(entry)
    return out
