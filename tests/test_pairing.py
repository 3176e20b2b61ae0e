"""Every course/NN_name.md has its notebooks/NN_name.ipynb and the other way round,
with the same cells; every notebook has been executed, top to bottom, without errors.

Sync is judged by content, not by timestamps: after a git checkout every file is "new".
Fix a failure with `make sync` (inputs), then `make execute` (outputs).
"""

from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "course").glob("[0-9][0-9]_*.md"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def cells(notebook):
    """What must agree between the pair: each cell's type, source and tags."""
    return [
        (cell.cell_type, cell.source.strip(), tuple(cell.metadata.get("tags", ())))
        for cell in notebook.cells
    ]


def test_there_is_a_start_page():
    assert (ROOT / "course" / "00_start_here.md") in SOURCES
    assert (ROOT / "notebooks" / "00_start_here.ipynb") in NOTEBOOKS


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_every_source_has_its_notebook(source):
    assert (ROOT / "notebooks" / f"{source.stem}.ipynb").exists(), f"run `make sync` to create it from {source.name}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_its_source(notebook):
    assert (ROOT / "course" / f"{notebook.stem}.md").exists(), (
        f"{notebook.name} has no course/{notebook.stem}.md: notebooks are generated from course/, never edited alone"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_pair_has_the_same_cells(source):
    notebook = ROOT / "notebooks" / f"{source.stem}.ipynb"
    if not notebook.exists():
        pytest.fail(f"{notebook.name} is missing")
    from_source = cells(jupytext.read(source))
    from_notebook = cells(jupytext.read(notebook))
    for index, (a, b) in enumerate(zip(from_source, from_notebook)):
        assert a == b, f"cell {index} differs between {source.name} and {notebook.name}: run `make sync`"
    assert len(from_source) == len(from_notebook), f"{source.name} and {notebook.name} differ in length: run `make sync`"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_source_declares_the_python_kernel(source):
    kernelspec = jupytext.read(source).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3" and kernelspec.get("language") == "python"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_was_executed_top_to_bottom_without_errors(notebook):
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code" and cell.source.strip()]
    counts = [cell.execution_count for cell in code]
    assert None not in counts, f"{notebook.name}: {counts.count(None)} code cells never ran: `make execute`"
    assert counts == list(range(1, len(code) + 1)), f"{notebook.name} was not run top to bottom in a fresh kernel: `make execute`"
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{notebook.name} holds error outputs: {[e.ename for e in errors]}"


NOISE = ("it/s]", "s/it]", "%|", "Install torchvision", "requires torchvision", "Loading weights",
         "Warning:", "warn(")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_outputs_carry_no_third_party_noise(notebook):
    """No stderr except in cells tagged `stderr` (a deliberate warning, shown on purpose), and no
    progress bars or library warnings anywhere: learners read these outputs on GitHub."""
    nb = nbformat.read(notebook, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        deliberate = "stderr" in cell.metadata.get("tags", [])
        for output in cell.outputs:
            text = output.get("text", "") or "".join(
                str(v) for k, v in output.get("data", {}).items() if k.startswith("text/"))
            if output.get("name") == "stderr":
                assert deliberate, f"{notebook.name} cell {index}: stderr output {text[:120]!r} (tag the cell `stderr` if deliberate)"
            elif not deliberate:
                noise = [n for n in NOISE if n in text]
                assert not noise, f"{notebook.name} cell {index}: {noise} in {text[:160]!r}"
            assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {}) or \
                "text/plain" in output.get("data", {}), f"{notebook.name} cell {index}: a widget with no text fallback"
