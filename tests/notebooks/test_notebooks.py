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


def _execute(name: str, home: str, monkeypatch,
             variable: str = "GRACEFUL_HOME") -> nbformat.NotebookNode:
    monkeypatch.setenv(variable, home)
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


def test_interactive_pipeline_notebook(tmp_path, monkeypatch):
    """The pipeline's components run one by one with InteractiveContext in a fresh home of the
    test's own (nothing written to the repository): statistics, anomalies, a first model pushed, a
    candidate trained against it as the resolved baseline, its flip report inline."""
    home = tmp_path / "interactive"
    book = _execute("interactive_pipeline.ipynb", str(home), monkeypatch,
                    variable="GRACEFUL_INTERACTIVE_HOME")
    text = _text(book)
    for component in ("ImportExampleGen", "StatisticsGen", "ExampleValidator", "DataGate",
                      "Trainer", "FlipEvaluator"):
        assert f"component_id: {component}" in text, f"{component} ran"
    assert "facets-iframe" in text, "the TFDV statistics view"
    assert "No anomalies found" in text, "the ExampleValidator's anomalies"
    assert "baseline: none yet" in text and "pushed to: " + str(home / "serving") in text
    assert "[baseline] the baseline is the served model" in text, "the resolver found the first model"
    assert "[train] 600 examples; reference outputs" in text, "the candidate trained against it"
    assert "negative flips" in text and "NFR" in text and "flip gate: " in text, "the report's headline"
    assert "<iframe srcdoc=" in text and "data:image/png;base64," in text, "the report page inline"
    assert _count(book, "image/png") >= 2, "the flip matrix and per-class NFR plots"
    assert (home / "pipeline_root" / "metadata.sqlite").exists(), "the context's store, in the home"
