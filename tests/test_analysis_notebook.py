"""notebooks/explore_results.ipynb runs top to bottom against a hand-made experiment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from analysis_fixtures import make_alpha_lr

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "explore_results.ipynb"


@pytest.mark.slow
def test_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    experiment = make_alpha_lr(tmp_path / "alpha_lr")
    monkeypatch.setenv("NGPT_EXPERIMENT", str(experiment))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    assert (experiment / "trials.parquet").is_file()  # the notebook ran the analysis itself
    text = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "campaign alpha_lr: 10 trials" in text
    images = [
        o
        for cell in notebook.cells
        for o in cell.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert images  # the learning curves were drawn
