"""The README's promises: its Colab badges open notebooks that exist, in the
repository the package names, and its test command is the one CI runs."""

import os
import re
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
COLAB_LINK = re.compile(
    r"https://colab\.research\.google\.com/github/(?P<repo>[\w.-]+/[\w.-]+)/blob/(?P<branch>[\w.-]+)/(?P<path>[^)\s\"']+)"
)
BADGES = list(COLAB_LINK.finditer(README))


def repository():
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    return url.removeprefix("https://github.com/").rstrip("/")


def quick_start_commands():
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_has_badges():
    assert len(BADGES) >= 1


@pytest.mark.parametrize("badge", BADGES, ids=lambda m: m["path"])
def test_badge_points_to_an_existing_notebook(badge):
    path = badge["path"]
    assert path.startswith("notebooks/") and path.endswith(".ipynb")
    assert (ROOT / path).is_file(), f"README's Colab badge points to {path}, which does not exist"


@pytest.mark.parametrize("badge", BADGES, ids=lambda m: m["path"])
def test_badge_points_to_the_course_repository(badge):
    assert badge["repo"] == repository()
    assert badge["branch"] == "main"


def test_every_notebook_has_a_badge():
    linked = {badge["path"] for badge in BADGES}
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"notebooks/{notebook.name}" in linked, f"add a row with a Colab badge for {notebook.name} to README.md"


def test_notebooks_install_from_the_same_repository():
    # the Colab install cell of every notebook names the repository the badges open
    for source in sorted((ROOT / "course").glob("[0-9][0-9]_*.md")):
        text = source.read_text()
        if "google.colab" in text:
            assert f'REPO_URL = "https://github.com/{repository()}"' in text, source.name


def test_two_commands_from_a_fresh_clone():
    assert quick_start_commands() == ["make course", "make test"]


def test_ci_runs_the_readme_test_command():
    test_command = quick_start_commands()[1]
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK), ".ci/run must be executable"
    lines = [line.strip() for line in ci.read_text().splitlines()]
    assert lines[0].startswith("#!") and "bash" in lines[0]
    run = [line for line in lines if line and not line.startswith("#")]
    assert any(line == test_command or line.startswith(test_command + " ") for line in run), (
        f".ci/run does not run the README's test command `{test_command}`"
    )


def test_make_test_runs_pytest():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "pytest" in recipe


@pytest.mark.parametrize("badge", BADGES, ids=lambda m: m["path"])
def test_badge_opens_a_learner_copy_without_solutions(badge):
    import nbformat

    assert badge["path"].startswith("notebooks/workbook/"), "Colab badges open the learner copies"
    nb = nbformat.read(ROOT / badge["path"], as_version=4)
    assert not any("solution" in c.metadata.get("tags", []) for c in nb.cells)


def test_every_notebook_has_a_badge():
    notebooks = sorted(p.name for p in (ROOT / "notebooks" / "workbook").glob("*.ipynb"))
    assert sorted(Path(b["path"]).name for b in BADGES) == notebooks
