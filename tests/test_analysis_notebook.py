"""notebooks/explore_results.ipynb runs top to bottom against a real smoke experiment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "explore_results.ipynb"


@pytest.mark.slow
def test_notebook_executes(smoke_experiment, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    experiment = tmp_path / "quickstart"
    shutil.copytree(smoke_experiment, experiment, ignore=shutil.ignore_patterns("*.parquet"))
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
    assert "campaign quickstart: 4 trials" in text
    images = [
        o
        for cell in notebook.cells
        for o in cell.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert images  # the learning curves were drawn
