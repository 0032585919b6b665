"""The notebooks of notebooks/: kept in git without outputs, and each one run headless, top to bottom,
on the real MNIST (through the local mirror, as CI has it), in a temporary working folder.

A notebook's cells check the numbers its prose states (`assert accuracy > 0.95`), so a notebook
that stops teaching the truth fails here. Running them needs the notebook extra (a Jupyter kernel,
nbclient, matplotlib): `pip install -e ".[notebook]"`; `-m "not notebook"` leaves them out.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MAX_SECONDS = 180          # what a notebook may take here; they take 5-40 s


def test_there_are_notebooks_to_run():
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_kept_without_outputs(path):
    """Outputs stay out of git, so that a diff shows what changed in the teaching, not in the pictures."""
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, \
                f"{path.name}: cell {cell.get('id')} has outputs: clear them before committing"
    assert "widgets" not in notebook["metadata"], f"{path.name} keeps widget state: clear it before committing"


@pytest.mark.notebook
@pytest.mark.real_data
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_headless_and_its_checks_hold(path, shared_data, mnist_data_dir, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    # The kernel inherits this environment: MNIST from the session's data dir (filled from the mirror),
    # one BLAS thread, matplotlib drawing to images.
    monkeypatch.setenv("MLKNOBS_MIRROR", str(shared_data))
    monkeypatch.setenv("MLKNOBS_DATA_DIR", str(mnist_data_dir))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))     # the kernel's connection file
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")
    work = tmp_path / "work"
    work.mkdir()
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=MAX_SECONDS, kernel_name="python3",
                                     resources={"metadata": {"path": str(work)}})
    started = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name} failed:\n{error}")
    seconds = time.perf_counter() - started
    assert seconds < MAX_SECONDS, f"{path.name} took {seconds:.0f} s"
    assert list(work.iterdir()) == [], f"{path.name} wrote into its working folder"
    pictures = sum("image/png" in output.get("data", {}) for cell in notebook.cells
                   for output in cell.get("outputs", []))
    assert pictures >= 2, f"{path.name} drew {pictures} pictures"


@pytest.mark.notebook
@pytest.mark.real_data
def test_progress_bars_are_notebook_widgets_in_jupyter(shared_data, tmp_path, monkeypatch):
    """tqdm.auto: the download's and the training's bars are widgets in a notebook, text elsewhere."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipywidgets")
    monkeypatch.setenv("MLKNOBS_MIRROR", str(shared_data))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    code = [f"import mlknobs\ndata = mlknobs.load_dataset(data_dir={str(tmp_path / 'data')!r}, progress=True)",
            "model = mlknobs.train(data.subset(train=500, test=100), hidden_size=8, epochs=1, progress=True)",
            "model"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in code])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    widget = "application/vnd.jupyter.widget-view+json"
    download, training, shown = (cell.outputs for cell in notebook.cells)
    assert any(widget in output.get("data", {}) for output in download)
    assert any(widget in output.get("data", {}) for output in training)
    assert "text/html" in shown[0]["data"] and "test accuracy" in shown[0]["data"]["text/html"]
