"""Every notebook in notebooks/ runs top to bottom, offline, and shows what it promises."""

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))

# Text each notebook must show when run offline (what a reader is told they will see).
EXPECTED = {
    "01_quickstart.ipynb": [
        "offline mirror model",
        '- you said: "Hello! What can you see?"',
        "Tool `get_weather` returned: It is 21C and sunny in Oslo.",
        "- history: 5 earlier items",
        "Could not reach the model provider at http://127.0.0.1:9/v1",
        "'ok'",
    ],
}


def text_of(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path):
    shutil.copy(path, tmp_path / path.name)
    nb = nbformat.read(tmp_path / path.name, as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, errors[0]["evalue"] if errors else ""
    text = text_of(nb)
    for expected in EXPECTED.get(path.name, []):
        assert expected in text
