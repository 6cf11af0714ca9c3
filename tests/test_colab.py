"""Notebooks in colab/ run top to bottom (quick mode) with nbclient."""
import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "colab", "*.ipynb"))))
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TF_ENAS_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("TF_ENAS_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert os.path.exists(tmp_path / "out" / "model.keras")
    outputs = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "retrained test accuracy" in outputs
