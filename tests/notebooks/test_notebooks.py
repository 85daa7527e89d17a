"""The notebooks, executed headless (nbclient, a real IPython kernel) on a tiny pipeline home: every
cell runs without error and shows what it promises."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import make_tiny_config, run_span, with_training

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    config = make_tiny_config(tmp_path_factory.mktemp("nb"))
    run_span(config, span=1)
    run_span(with_training(config, architecture="mlp"), span=2)
    return config.home


def _execute(name: str, home: str, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("GRACEFUL_HOME", home)
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), \
        "commit notebooks without outputs"
    NotebookClient(book, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS.parent)}}).execute()
    return book


def _text(book) -> str:
    parts = []
    for cell in book.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
            parts.append(output.get("data", {}).get("text/html", ""))
    return "\n".join(parts)


def _count(book, mime: str) -> int:
    return sum(mime in output.get("data", {}) for cell in book.cells
               for output in cell.get("outputs", []))


def test_flip_analysis_notebook(home, monkeypatch):
    book = _execute("flip_analysis.ipynb", home, monkeypatch)
    text = _text(book)
    assert "run 2: model" in text and "negative flips" in text
    assert "negative_flip_rate" in text, "the TFMA per-slice table"
    assert "facets-overview" in text.lower() or "tfdv" in text.lower(), "the TFDV statistics view"
    assert _count(book, "image/png") >= 3, "the flip report's plots"
    assert "flipped images shown" in text


def test_lineage_notebook(home, monkeypatch):
    book = _execute("lineage.ipynb", home, monkeypatch)
    text = _text(book)
    assert "signed off: approve by auto_approve" in text
    assert "trained on:" in text and "span 2" in text and "pushed to:" in text
