"""Bad input never starts Ray and never prints a traceback: one line, file and key, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ngpt_tune.presets import preset_yaml
from ngpt_tune.shards import write_shard

GOOD = """\
name: t
search:
  model.alpha: {uniform: [0.05, 0.3]}
""" + preset_yaml("tiny", {"train.steps": 20, "train.eval_every": 5}, under="base")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "ngpt_tune", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env)


def spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    return path


def shards(folder: Path, *, corrupt: str | None = None) -> Path:
    folder.mkdir()
    write_shard(folder / "fineweb_train_000001.bin", np.arange(5000) % 50000)
    val = folder / "fineweb_val_000000.bin"
    write_shard(val, np.arange(3000) % 50000)
    if corrupt == "magic":
        data = bytearray(val.read_bytes())
        data[0:4] = (123).to_bytes(4, "little")
        val.write_bytes(bytes(data))
    elif corrupt == "truncated":
        val.write_bytes(val.read_bytes()[:-100])
    return folder


def assert_one_line_error(out: subprocess.CompletedProcess, *needles: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("ngpt-tune: error: ")
    assert "Traceback" not in out.stderr
    assert "Ray" not in out.stdout + out.stderr  # nothing was started
    for needle in needles:
        assert needle in lines[0], lines[0]


CASES = {
    "not yaml": (GOOD.replace("search:", "search: [oops"), ["not valid YAML at line"]),
    "unknown top key": (GOOD.replace("search:", "serach:"),
                        ["key 'serach'", "did you mean 'search'"]),
    "unknown config key": (GOOD.replace("n_layer", "n_layers"),
                           ["key 'base.model.n_layers'", "did you mean 'n_layer'"]),
    "unknown searched key": (GOOD.replace("model.alpha:", "model.alhpa:"),
                             ["key 'search.model.alhpa'", "did you mean 'alpha'"]),
    "unknown distribution": (GOOD.replace("uniform:", "unifrom:"),
                             ["key 'search.model.alpha.unifrom'", "did you mean 'uniform'"]),
    "wrong type": (GOOD + "num_samples: many\n", ["key 'num_samples'", "integer"]),
    "negative lr": (GOOD.replace("train: {", "optim: {lr: -0.001}\n  train: {"),
                    ["key 'base.optim.lr'", "> 0"]),
    "alpha out of range": (GOOD.replace("[0.05, 0.3]", "[0.05, 1.5]"),
                           ["key 'search.model.alpha'", "1.5", "(0, 1]"]),
    "n_embd vs n_head": (GOOD.replace("n_head: 2", "n_head: 3"),
                         ["key 'base.model.n_embd'", "divisible"]),
    "grace above max": (GOOD + "scheduler: {name: asha, time_attr: step, grace_period: 50}\n",
                        ["key 'scheduler.grace_period'", "above the max budget"]),
    "empty search": (GOOD.replace("  model.alpha: {uniform: [0.05, 0.3]}\n", ""),
                     ["key 'search'", "empty"]),
    "grid needs grid values": (GOOD + "searcher: grid\n", ["key 'search.model.alpha'", "grid"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_spec_is_one_line_naming_file_and_key(tmp_path, case):
    text, needles = CASES[case]
    path = spec_file(tmp_path, text)
    for command in ("validate", "run"):
        assert_one_line_error(cli(command, str(path), "--storage", str(tmp_path / "r"))
                              if command == "run" else cli(command, str(path)),
                              str(path), *needles)
    assert not (tmp_path / "r").exists()  # run wrote nothing


@pytest.mark.parametrize(
    ("problem", "needles"),
    [
        ("missing", ["key 'base.data.dir'", "does not exist", "download-fineweb"]),
        ("empty", ["key 'base.data'", "fineweb_train_*.bin"]),
        ("magic", ["key 'base.data'", "fineweb_val_000000.bin", "magic"]),
        ("truncated", ["key 'base.data'", "fineweb_val_000000.bin"]),
    ],
)
def test_bad_data_folder_is_one_line(tmp_path, problem, needles):
    folder = tmp_path / "shards"
    if problem == "empty":
        folder.mkdir()
    elif problem != "missing":
        shards(folder, corrupt=problem)
    path = spec_file(tmp_path, GOOD.replace("dir: builtin-compact", f"dir: {folder}"))
    assert_one_line_error(cli("validate", str(path)), str(path), *needles)


def test_good_data_folder_validates(tmp_path):
    folder = shards(tmp_path / "shards")
    path = spec_file(tmp_path, GOOD.replace("dir: builtin-compact", f"dir: {folder}"))
    out = cli("validate", str(path))
    assert out.returncode == 0, out.stderr
    assert "trials  1" in out.stdout and f"data {folder}" in out.stdout


def test_set_overrides_are_checked(tmp_path):
    path = spec_file(tmp_path, GOOD)
    assert_one_line_error(cli("validate", str(path), "--set", "model.alhpa=0.2"),
                          "--set", "did you mean 'alpha'")
    out = cli("validate", str(path), "--set", "train.steps=40", "--num-samples", "3")
    assert out.returncode == 0 and "40 steps" in out.stdout and "trials  3" in out.stdout


def test_missing_spec_and_missing_experiment(tmp_path):
    assert_one_line_error(cli("validate", str(tmp_path / "nope.yaml")), "file not found")
    assert_one_line_error(cli("resume", str(tmp_path / "nope")), "no such experiment folder")
    (tmp_path / "not_an_experiment").mkdir()
    assert_one_line_error(cli("resume", str(tmp_path / "not_an_experiment")),
                          "not an ngpt-tune experiment folder")


def test_validate_prints_the_resolved_space(tmp_path):
    path = spec_file(tmp_path, GOOD + "num_samples: 6\nrepeats: 2\n")
    out = cli("validate", str(path))
    assert out.returncode == 0, out.stderr
    assert "model.alpha: uniform(0.05, 0.3)" in out.stdout
    assert "trials  12 (6 samples x 2 seed(s))" in out.stdout


def test_prepare_data_then_validate_a_spec_on_it(tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("The normalized Transformer keeps every vector on the unit sphere. " * 200)
    more = tmp_path / "more.jsonl"
    more.write_text("\n".join(json.dumps({"text": f"document {i} " * 50}) for i in range(20)))
    out = cli("prepare-data", str(docs), str(more), "--out", str(tmp_path / "shards"),
              "--val-fraction", "0.2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("21 documents, ")
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "fineweb_train_000001.bin", "fineweb_val_000000.bin"]
    again = cli("prepare-data", str(docs), str(more), "--out", str(tmp_path / "shards"))
    assert_one_line_error(again, "shards")  # never overwrites silently
    path = spec_file(tmp_path, GOOD.replace("dir: builtin-compact", f"dir: {tmp_path / 'shards'}"))
    assert cli("validate", str(path)).returncode == 0


def test_set_takes_several_pairs(tmp_path):
    path = spec_file(tmp_path, GOOD)
    out = cli("validate", str(path), "--set", "train.steps=40", "model.alpha=0.2",
              "--num-samples", "3")
    assert out.returncode == 0, out.stderr
    assert "40 steps" in out.stdout and "trials  3" in out.stdout


class _NoTuner:
    """Stands in for Ray Tune: ``run`` records the campaign, then this 'runs' no trial."""

    def fit(self):
        return []


@pytest.fixture
def no_ray(monkeypatch):
    """``main(["run", ...])`` in this process, with Ray replaced: records what would start."""
    import ngpt_tune.campaign as campaign
    import ngpt_tune.stages as stages

    started = []
    monkeypatch.setattr(campaign, "init_ray", lambda options: started.append("ray"))
    monkeypatch.setattr(stages, "build_tuner", lambda spec, **kw: _NoTuner())
    return started


def test_campaign_json_records_the_argv_main_received(tmp_path, no_ray, capsys):
    from ngpt_tune.__main__ import main
    from ngpt_tune.experiment import read_campaign
    from ngpt_tune.request import RunRequest, build_spec

    path = spec_file(tmp_path, GOOD)
    argv = ["run", str(path), "--storage", str(tmp_path / "r"), "--name", "e",
            "--num-samples", "2", "--set", "train.steps=30", "model.alpha=0.2"]
    assert main(argv) == 0 and no_ray == ["ray"]
    record = read_campaign(tmp_path / "r" / "e")
    assert record["command"] == "python -m ngpt_tune " + " ".join(argv)  # not pytest's sys.argv
    assert record["request"]["overrides"] == {"train.steps": 30, "model.alpha": 0.2}
    assert record["request"]["num_samples"] == 2 and record["request"]["spec_yaml"] == GOOD
    spec = build_spec(RunRequest.from_record(record["request"]))  # what resume rebuilds
    assert spec.trial_count() == 2 and spec.base_config.train.steps == 30
    summary = json.loads((tmp_path / "r" / "e" / "summary.json").read_text())
    assert summary["command"] == record["command"]


@pytest.mark.parametrize(("where", "text"), [
    ("base.train.device", GOOD.replace("steps: 20,", "steps: 20, device: cuda,")),
    ("variants.fast.train.device",
     GOOD + "variants:\n  slow: {}\n  fast: {train.device: cuda}\n"),
])
def test_cuda_without_cuda_is_one_line_before_ray(tmp_path, monkeypatch, no_ray, capsys,
                                                  where, text):
    import torch

    from ngpt_tune.__main__ import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = spec_file(tmp_path, text)
    run = ["run", str(path), "--storage", str(tmp_path / "r"), "--name", "e"]
    assert main(run) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"ngpt-tune: error: {path}: key '{where}': 'cuda', but this machine")
    assert no_ray == [] and not (tmp_path / "r").exists()  # nothing started, nothing written
    assert main([*run, "--address", "auto"]) == 0  # on a cluster, the cluster decides
    assert no_ray == ["ray"]
