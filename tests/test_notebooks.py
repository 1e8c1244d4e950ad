"""Notebooks: committed without outputs, parameterised, and executable against results.

Why: notebooks rot silently when the analysis API moves; executing them here (papermill,
the same path `make report` takes) against the committed fixture catches that, and executing
them against an empty folder checks that a missing table reads "not run yet", not a traceback.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from experiments.analysis import report

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIXTURE = ROOT / "tests" / "fixtures" / "results"
EXPECTED = {"00_overview", "01_paper", "05_sweeps"}


def test_expected_notebooks_exist():
    assert EXPECTED <= {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: clear outputs (nbstripout)"
            assert cell.execution_count is None, f"{path.name}: clear execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell(path):
    book = nbformat.read(path, as_version=4)
    tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: one cell tagged 'parameters'"
    namespace: dict = {}
    exec(tagged[0].source, namespace)
    assert namespace["results_dir"] == "../results" and namespace["profile"] is None


def _run(results_dir: Path, html_dir: Path) -> dict[str, str]:
    errors = report.run_notebooks(results_dir, html_dir=html_dir, profile="quick")
    assert set(errors) == {name for _, name, _ in report.notebook_runs()}
    assert not any(errors.values()), errors
    pages = {p.stem: p.read_text() for p in html_dir.glob("*.html")}
    assert set(pages) == set(errors)
    for name, page in pages.items():
        assert "Traceback" not in page, name
        assert str(ROOT) not in page, f"{name}: a path of this machine leaked into the HTML"
    return pages


@pytest.mark.slow  # over a minute on 2 cores: make test-full
def test_notebooks_execute_against_fixture(tmp_path):
    pages = _run(FIXTURE, tmp_path / "html")
    assert (
        "layers=low+mid" in pages["01_paper_localvit"] and "image/png" in pages["01_paper_localvit"]
    )
    assert (
        "fusion=sum" in pages["01_paper_efficientmod"]
        and "not run yet" in pages["01_paper_efficientmod"]
    )
    assert "agrees" in pages["00_overview"]
    assert "localvit_lr" in pages["05_sweeps"]


@pytest.mark.slow
def test_notebooks_degrade_without_results(tmp_path):
    empty = tmp_path / "results"
    empty.mkdir()
    pages = _run(empty, tmp_path / "html")
    assert "not run yet" in pages["00_overview"]
    assert (
        "not run yet" in pages["01_paper_localvit"]
        and "not run yet" in pages["01_paper_efficientmod"]
    )
    assert "no sweep results yet" in pages["05_sweeps"]


def test_papers_are_the_grid_folders_not_sweeps():
    assert report.paper_names(ROOT / "ablations") == [
        "casvit",
        "efficientmod",
        "localvit",
        "scalablevit",
    ]
