"""The learner notebooks (notebooks/workbook/): generated from the teacher notebooks, without
solutions or outputs, and runnable top to bottom as a learner first opens them."""

import importlib.util
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("learner_notebooks", ROOT / "scripts" / "learner_notebooks.py")
learner_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(learner_notebooks)

TEACHER = learner_notebooks.teacher_notebooks()
WORKBOOK = sorted(learner_notebooks.WORKBOOK.glob("*.ipynb"))


def test_every_teacher_notebook_has_an_up_to_date_learner_copy():
    assert TEACHER, "no teacher notebooks found"
    assert [p.name for p in WORKBOOK] == [p.name for p in TEACHER], "run `make learner`"
    assert learner_notebooks.main(["--check"]) == 0, "a learner notebook is stale: run `make learner`"


@pytest.mark.parametrize("path", WORKBOOK, ids=lambda p: p.name)
def test_learner_copy_has_no_solution_no_output_no_pairing(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any("solution" in c.metadata.get("tags", []) for c in code)
    assert not any(c.outputs or c.execution_count for c in code)
    assert not any("NBVAL_" in c.source for c in code)
    assert "jupytext" not in nb.metadata
    assert "widgets" not in nb.metadata, "the teacher run's widget state is not the learner's"


def test_learner_version_removes_solutions_and_outputs():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("answer = ...", outputs=[], execution_count=1),
        nbformat.v4.new_code_cell("answer = 42", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\ncheck(answer)", execution_count=2,
                                  outputs=[nbformat.v4.new_output("stream", text="Correct!")]),
    ])
    learner = learner_notebooks.learner_version(nb)
    assert [c.source for c in learner.cells] == ["answer = ...", "check(answer)"]
    assert all(c.outputs == [] and c.execution_count is None for c in learner.cells)
    assert nb.cells[2].outputs, "the teacher notebook itself is left as it was"


def test_saving_a_learner_notebook_never_writes_to_course():
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(learner_notebooks.WORKBOOK))
    assert config.default_formats(str(learner_notebooks.WORKBOOK / "00_start_here.ipynb")) == "ipynb"


@pytest.mark.parametrize("path", WORKBOOK, ids=lambda p: p.name)
def test_untouched_learner_notebook_runs_and_every_check_says_not_yet(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "COURSE_PROFILE": "toy", "HF_HUB_OFFLINE": "1"}
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.km = client.create_kernel_manager()
    client.km.extra_env = env  # nbclient passes this on to the kernel
    client.execute(env=env)
    checks = [c for c in nb.cells if c.cell_type == "code"
              and any(re.match(r"([\w.]+\.)?check_\w+\(", line) for line in c.source.splitlines())]
    assert checks, f"{path.name} has no exercise check"
    for cell in checks:
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert "Not yet solved" in text, f"{path.name}: a check on the untouched placeholder said {text!r}"


@pytest.mark.parametrize("path", TEACHER, ids=lambda p: p.name)
def test_every_teacher_notebook_has_exercises_with_solutions(path):
    nb = nbformat.read(path, as_version=4)
    assert any("solution" in c.metadata.get("tags", []) for c in nb.cells), f"{path.name} has no exercise"
