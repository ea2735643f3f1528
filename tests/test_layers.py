"""The house: five layers whose imports only point down, no import cycle (imports inside
functions included), and no module over 400 lines. Read with ``ast``, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ngpt_tune", "analysis", "trainables")
MAX_LINES = 400

# lowest first; a module may import from its own layer and the ones before it
LAYERS = {
    "core": ["ngpt_tune", "ngpt_tune.config", "ngpt_tune.model", "ngpt_tune.optim",
             "ngpt_tune.data", "ngpt_tune.shards", "ngpt_tune.builtin_corpus",
             "ngpt_tune.tokenizer", "ngpt_tune.prepare",
             "ngpt_tune.download", "ngpt_tune.train", "ngpt_tune.compiling", "ngpt_tune.flops",
             "ngpt_tune.files", "ngpt_tune.errors", "ngpt_tune.provenance",
             "ngpt_tune.checkpoints", "ngpt_tune.memory",
             "ngpt_tune.branches"],
    "contract": ["ngpt_tune.experiment"],
    "spec": ["ngpt_tune.request", "ngpt_tune.spec", "ngpt_tune.spec_sections",
             "ngpt_tune.spec_checks", "ngpt_tune.space", "ngpt_tune.smoke", "ngpt_tune.presets",
             "ngpt_tune.asha", "ngpt_tune.ladder_plan",
             "ngpt_tune.searcher_spec", "ngpt_tune.scheduler_spec", "ngpt_tune.warm_start"],
    "analysis": ["analysis", "analysis.*"],  # the package and every module in it
    "orchestration": ["ngpt_tune.__main__", "ngpt_tune.campaign", "ngpt_tune.stages",
                      "ngpt_tune.runner", "ngpt_tune.confirm_stage", "ngpt_tune.search",
                      "ngpt_tune.schedulers",
                      "ngpt_tune.progress", "ngpt_tune.logger_callbacks", "ngpt_tune.jobs",
                      "trainables", "trainables.*"],
}
ORDER = list(LAYERS)


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def layer_of(name: str) -> str:
    """The layer that lists a module (``package.*``: every module of the package)."""
    for layer, names in LAYERS.items():
        if name in names or any(n.endswith(".*") and name.startswith(n[:-1]) for n in names):
            return layer
    raise AssertionError(f"{name} is in no layer: add it to tests/test_layers.py")


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, anywhere in the file but under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {name for name in out if name in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_every_import_points_down_the_layers():
    wrong = [f"{name} ({layer_of(name)}) imports {dep} ({layer_of(dep)})"
             for name, deps in graph().items() for dep in sorted(deps)
             if ORDER.index(layer_of(dep)) > ORDER.index(layer_of(name))]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(edges[name]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles[0]


def test_no_module_over_400_lines():
    paths = [p for package in (*PACKAGES, "benchmarks") for p in (REPO / package).rglob("*.py")]
    long = {str(p.relative_to(REPO)): n for p in paths
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_checks_can_fail(tmp_path, monkeypatch):
    """A module in no layer is named; an upward import and a cycle are found."""
    with pytest.raises(AssertionError, match="ngpt_tune.nowhere is in no layer"):
        layer_of("ngpt_tune.nowhere")
    (tmp_path / "ngpt_tune").mkdir()
    (tmp_path / "ngpt_tune" / "config.py").write_text("from ngpt_tune import campaign\n")
    (tmp_path / "ngpt_tune" / "campaign.py").write_text("import ngpt_tune.config\n")
    for package in ("analysis", "trainables"):
        (tmp_path / package).mkdir()
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    with pytest.raises(AssertionError, match="ngpt_tune.config \\(core\\) imports "
                                             "ngpt_tune.campaign \\(orchestration\\)"):
        test_every_import_points_down_the_layers()
    with pytest.raises(AssertionError, match="ngpt_tune.campaign -> ngpt_tune.config -> "
                                             "ngpt_tune.campaign"):
        test_no_import_cycle()
