"""A truncated or corrupt latest checkpoint falls back to the previous one, with a warning."""

from __future__ import annotations

import shutil

import pytest
from conftest import tiny_config

from ngpt_tune.checkpoints import NoReadableCheckpoint, checkpoint_index, older_checkpoints
from ngpt_tune.train import STATE_FILE, fit


def _checkpointed_run(config, root):
    """Train ``config`` once, keeping every checkpoint as ``root/checkpoint_00000N``."""
    history = []

    def report(metrics, save):
        history.append(metrics)
        if save is not None:
            save(root / f"checkpoint_{len(history) - 1:06d}")

    fit(config, report=report, checkpoint_every=config.train.eval_every)
    return history


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    """The tiny config trained once (20 steps, an evaluation and a checkpoint every 5), its
    checkpoints kept: each test damages its own copy (``_copy``)."""
    root = tmp_path_factory.mktemp("checkpointed")
    return root, _checkpointed_run(tiny_config(), root)


def _copy(checkpointed, tmp_path):
    root, history = checkpointed
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    return history


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous(tiny, tmp_path, capsys,
                                                                     damage, checkpointed):
    config = tiny()  # 20 steps, an evaluation and a checkpoint every 5
    full = _copy(checkpointed, tmp_path)
    latest, previous = tmp_path / "checkpoint_000002", tmp_path / "checkpoint_000001"
    state = latest / STATE_FILE
    if damage == "truncated":  # the node died while the file was written
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif damage == "garbage":
        state.write_bytes(b"\x00not a torch file" * 100)
    else:
        state.unlink()

    resumed = []
    result = fit(config, report=lambda m, save: resumed.append(m),
                 resume_from=[latest, previous], checkpoint_every=5)
    log = capsys.readouterr().err
    assert [m["step"] for m in resumed] == [15, 20]  # continued from step 10, not 15
    assert result.metrics["val_loss"] == full[-1]["val_loss"]  # as if never interrupted
    assert f"checkpoint {latest} could not be read" in log
    assert f"resumed from {previous}" in log


def test_a_readable_latest_checkpoint_is_used_without_touching_older_ones(tiny, tmp_path,
                                                                          checkpointed):
    config = tiny()
    _copy(checkpointed, tmp_path)

    def candidates():
        yield tmp_path / "checkpoint_000002"
        raise AssertionError("an older checkpoint was opened although the latest loads")

    resumed = []
    fit(config, report=lambda m, save: resumed.append(m["step"]), resume_from=candidates())
    assert resumed == [20]


def test_no_readable_checkpoint_is_an_error_naming_each(tiny, tmp_path):
    bad = [tmp_path / "checkpoint_000001", tmp_path / "checkpoint_000000"]
    for folder in bad:
        folder.mkdir()
        (folder / STATE_FILE).write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(NoReadableCheckpoint) as err:
        fit(tiny(), resume_from=bad)
    assert all(str(folder) in str(err.value) for folder in bad)


def test_older_checkpoints_are_listed_newest_first(tmp_path):
    from ray import tune

    for i in (0, 1, 3, 4):
        (tmp_path / f"checkpoint_{i:06d}").mkdir()
    (tmp_path / "checkpoint_tmp123").mkdir()  # Tune's own staging folder: not a checkpoint
    newest = tune.Checkpoint(str(tmp_path / "checkpoint_000003"))
    older = older_checkpoints(newest.path, newest.filesystem)
    assert [checkpoint_index(p) for p in older] == [1, 0]
    shutil.rmtree(tmp_path / "checkpoint_000000")
    oldest = tune.Checkpoint(str(tmp_path / "checkpoint_000001"))
    assert older_checkpoints(oldest.path, oldest.filesystem) == []
