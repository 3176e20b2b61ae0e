"""The learner version of each notebook is generated from it: no solutions, no outputs."""

import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("learner_notebooks", ROOT / "scripts" / "learner_notebooks.py")
learner_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(learner_notebooks)


def test_learner_versions_drop_solutions_and_keep_everything_else(tmp_path):
    learner_notebooks.main(["--out", str(tmp_path)])
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        full = nbformat.read(path, as_version=4)
        learner = nbformat.read(tmp_path / path.name, as_version=4)
        solutions = [c for c in full.cells if "solution" in c.metadata.get("tags", [])]
        assert solutions, f"{path.name} has no exercise solution"
        assert [c.source for c in learner.cells] == [c.source for c in full.cells if c not in solutions]
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in learner.cells if c.cell_type == "code")
