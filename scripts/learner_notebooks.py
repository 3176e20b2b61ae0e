"""Make the learner version of every notebook: solutions removed, outputs cleared.

    python scripts/learner_notebooks.py            # writes build/learner/NN_name.ipynb
    python scripts/learner_notebooks.py --out DIR

Solutions live in the source (`course/NN_name.md`), in code cells tagged `solution`; the
learner version is generated from them, never kept by hand. Each exercise's check cell then
says "Not yet" until the learner fills in their answer.
"""

import argparse
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def learner_version(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `notebook` without `solution` cells, with every code cell's output cleared."""
    learner = nbformat.from_dict(notebook)
    learner.cells = [c for c in learner.cells if "solution" not in c.get("metadata", {}).get("tags", [])]
    for cell in learner.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return learner


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "learner")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        learner = learner_version(notebook)
        nbformat.write(learner, args.out / path.name)
        print(f"{args.out / path.name}: {len(notebook.cells) - len(learner.cells)} solution cells removed")


if __name__ == "__main__":
    main()
