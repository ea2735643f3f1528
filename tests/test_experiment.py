"""ngpt_tune/experiment.py: the stage list, and records written before it existed."""

import pytest

from ngpt_tune.errors import NgptTuneError
from ngpt_tune.experiment import (
    CONFIRM_DIR,
    Stage,
    read_campaign,
    read_stages,
    write_campaign,
    write_stages,
)


def _table(stages):
    return [(s.name, s.kind, s.folder, s.status, s.of) for s in stages]


def test_the_stage_list_round_trips(tmp_path):
    stages = [Stage("search", "search", ".", "done", {}),
              Stage("confirm", "confirmation", CONFIRM_DIR, "running",
                    {"seeds": [7, 8], "top_k": 2}, of="search")]
    write_campaign(tmp_path, {"name": "x"})
    write_stages(tmp_path, stages)
    assert read_stages(read_campaign(tmp_path)) == stages


def test_a_search_from_before_the_stage_list_is_resumed_then_done():
    assert _table(read_stages({"name": "x"})) == [("search", "search", ".", "running", None)]


def test_a_linked_confirmation_from_before_the_stage_list():
    record = {"confirmation": {"path": "confirm", "status": "running", "top_k": 2,
                               "seeds": [5, 6]}}
    stages = read_stages(record)
    assert _table(stages) == [("search", "search", ".", "done", None),
                              ("confirm", "confirmation", "confirm", "interrupted", "search")]
    assert stages[1].plan == {"path": "confirm", "top_k": 2, "seeds": [5, 6]}
    record["confirmation"]["status"] = "done"
    assert read_stages(record)[1].done


def test_a_ladder_from_before_the_stage_list():
    record = {"ladder_rungs_done": [0, 1],
              "spec": {"ladder": {"sizes": [{"model.n_embd": 16}] * 3}}}
    assert _table(read_stages(record)) == [
        ("rung0", "ladder_size", "rung0", "done", None),
        ("rung1", "ladder_size", "rung1", "done", None),
        ("rung2", "ladder_size", "rung2", "pending", None),
        ("fit", "ladder_fit", ".", "pending", None)]


@pytest.mark.parametrize("field, value", [("kind", "sweep"), ("status", "half-done")])
def test_an_unknown_kind_or_status_is_named(field, value):
    entry = {"name": "s", "kind": "search", "folder": ".", field: value}
    with pytest.raises(NgptTuneError, match=f"stage 's': unknown {field} '{value}'"):
        read_stages({"stages": [entry]})
