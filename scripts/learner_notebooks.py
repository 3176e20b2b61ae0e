"""Make the learner notebooks (the workbook): solutions removed, outputs cleared.

    python scripts/learner_notebooks.py            # writes notebooks/workbook/NN_name.ipynb (and th/NN_name.ipynb)
    python scripts/learner_notebooks.py --check    # exit 1 if a learner notebook is stale

Solutions live in the source (`course/NN_name.md`), in code cells tagged `solution`; the
learner notebooks are generated from the executed teacher notebooks in `notebooks/`, never kept
by hand, and committed, so that the Colab badges and `make course` open them. Each exercise's
check cell says "Not yet solved" until the learner fills in their answer. The nbval markers
(`# NBVAL_...` lines) are for the teacher notebooks' tests and are left out.

Each edition of the course has its folder: English in `notebooks/` (workbook: `notebooks/workbook/`),
Thai in `notebooks/th/` (workbook: `notebooks/workbook/th/`).
"""

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
TEACHER = ROOT / "notebooks"
WORKBOOK = TEACHER / "workbook"
EDITIONS = ("", "th")
"""The course's editions, as subfolders of `notebooks/` and of the workbook: English (""), Thai ("th")."""


def learner_version(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `notebook` without `solution` cells, outputs and nbval markers."""
    learner = nbformat.from_dict(notebook)
    learner.cells = [c for c in learner.cells if "solution" not in c.get("metadata", {}).get("tags", [])]
    for cell in learner.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            lines = cell.source.splitlines()
            cell.source = "\n".join(line for line in lines if not line.startswith("# NBVAL_"))
        cell.metadata.pop("execution", None)
    learner.metadata.pop("jupytext", None)  # not paired: saving it never writes to course/
    learner.metadata.pop("widgets", None)  # the teacher run's widget state: a learner runs the widgets anew
    return learner


def teacher_notebooks(folder: Path = TEACHER) -> list[Path]:
    """The executed teacher notebooks whose learner versions make the workbook."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def learner_paths() -> list[tuple[Path, Path]]:
    """(teacher notebook, its learner copy) for every notebook of every edition."""
    return [(path, WORKBOOK / edition / path.name)
            for edition in EDITIONS for path in teacher_notebooks(TEACHER / edition)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the workbook is up to date")
    args = parser.parse_args(argv)
    stale = []
    for path, target in learner_paths():
        learner = learner_version(nbformat.read(path, as_version=4))
        text = nbformat.writes(learner) + "\n"
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target)
        if not args.check:
            target.parent.mkdir(exist_ok=True)
            target.write_text(text)
            print(f"wrote {target.relative_to(ROOT)}")
    if args.check and stale:
        print("stale learner notebooks: " + ", ".join(str(p.relative_to(ROOT)) for p in stale)
              + "; run `make learner`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
