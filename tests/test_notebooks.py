"""Every notebook runs end to end on CPU with tiny settings, and is committed without outputs.

Tiny settings replace the notebook's `parameters` cell the way papermill does (a cell after it
that sets them again); the notebook then runs in a fresh Jupyter kernel in a temporary folder.
"""

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent("the notebooks run under Keras' default backend, TensorFlow")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TINY = {
    "quickstart.ipynb": {"EPOCHS": 1, "NUM_EXAMPLES": 16, "STEPS_PER_EPOCH": 2, "RESOLUTION": 16,
                         "NUM_FRAMES": 11, "TENSORBOARD": False},
    "train_ucf101.ipynb": {"MOCK_DATA": True, "MOCK_EXAMPLES": 4, "TENSORBOARD": False,
                           "OVERRIDES": ["epochs=2", "steps_per_epoch=2", "validation_steps=1", "batch_size=2",
                                         "num_frames=16", "resolution=64", "width=0.0625", "fidelity_every=1"]},
    "streaming.ipynb": {"SIZE": 16, "MAX_FRAMES": 40, "CHUNK": 10, "WIDTH": 0.25},
}


def execute(path: Path, parameters: dict, workdir: Path):
    """Runs the notebook at `path` with `parameters` injected after its `parameters` cell."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(path, as_version=4)
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    injected = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    # The kernel imports this checkout's sideways_tf, whatever else site-packages holds.
    path_entries = [str(NOTEBOOKS.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path_entries), "TF_CPP_MIN_LOG_LEVEL": "3"}
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute(env=env)
    return notebook


def test_every_notebook_has_tiny_settings():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs_end_to_end(name, tmp_path):
    notebook = execute(NOTEBOOKS / name, TINY[name], tmp_path)
    errors = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert not errors
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the notebook drew no plot"


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_is_committed_clean_with_a_badge_and_parameters(name):
    notebook = json.loads((NOTEBOOKS / name).read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code), "outputs committed"
    assert f"colab.research.google.com/github/sideways-tf/sideways_tf/blob/main/notebooks/{name}" in "".join(
        notebook["cells"][0]["source"])
    assert "pip install" in "".join(code[0]["source"])
    assert "parameters" in code[1]["metadata"].get("tags", [])
    readme = (NOTEBOOKS.parent / "README.md").read_text()
    assert f"notebooks/{name}" in readme, "the README links every notebook"
