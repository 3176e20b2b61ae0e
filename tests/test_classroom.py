"""The course as a product: the classroom set-up (scripts/classroom.py), the pre-class check
(scripts/preclass_check.py), what can be tested of Colab offline, and the syllabus and
instructor guide staying true to the notebooks and their checks.

The wheelhouse and the offline install themselves need the network and minutes; here only
their plans are checked, never downloaded."""

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


classroom = load_script("classroom")
WORKBOOK = sorted((ROOT / "notebooks" / "workbook").glob("[0-9][0-9]_*.ipynb"))
SOURCES = sorted((ROOT / "course").glob("[0-9][0-9]_*.md"))


def pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["dev"]


# --- the wheelhouse and the set-up ---------------------------------------------------------

def test_wheelhouse_asks_for_everything_pyproject_installs():
    planned = {Requirement(r).name.lower(): Requirement(r) for r in classroom.requirements()}
    for line in pyproject_requirements():
        requirement = Requirement(line)
        assert requirement.name.lower() in planned, f"the wheelhouse would miss {line}"
        if requirement.name != "torch":
            assert planned[requirement.name.lower()].specifier == requirement.specifier
    assert str(planned["torch"].specifier) == classroom.TORCH_SPEC.removeprefix("torch")


def test_torch_pin_is_the_makefiles():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^TORCH_SPEC \?= {re.escape(classroom.TORCH_SPEC)}$", makefile, re.M)


def test_wheelhouse_plan_has_cpu_torch_everything_else_and_build_tools(tmp_path):
    torch, rest, build = classroom.wheelhouse_commands(tmp_path)
    assert torch[-4:] == ["--no-deps", classroom.TORCH_SPEC, "--index-url", classroom.CPU_TORCH_INDEX]
    assert rest[rest.index("--find-links") + 1] == str(tmp_path), "the rest must reuse the CPU torch"
    assert set(classroom.requirements()) <= set(rest)
    assert {"setuptools>=64", "wheel"} <= set(build), "pip install -e . needs them with no network"
    assert all(c[:4] == [sys.executable, "-m", "pip", "download"] for c in (torch, rest, build))


def test_wheelhouse_plan_for_other_laptops(tmp_path):
    for command in classroom.wheelhouse_commands(tmp_path, target="windows", python="3.12"):
        assert "--platform=win_amd64" in command and "--only-binary=:all:" in command
        assert command[command.index("--python-version") + 1] == "3.12"


def test_wheelhouse_plan_from_the_command_line():
    result = subprocess.run([sys.executable, "scripts/classroom.py", "wheelhouse", "--plan"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(" -m pip download " in line for line in lines)


def test_cpu_torch_by_default_on_linux_without_nvidia(monkeypatch):
    monkeypatch.setattr(classroom.sys, "platform", "linux")
    monkeypatch.setattr(classroom.shutil, "which", lambda name: None)
    assert classroom.default_torch_index() == classroom.CPU_TORCH_INDEX
    monkeypatch.setattr(classroom.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    assert classroom.default_torch_index() is None
    monkeypatch.setattr(classroom.sys, "platform", "win32")
    assert classroom.default_torch_index() is None  # PyPI's Windows torch is the CPU build


def recorded_setup(monkeypatch, tmp_path, **kwargs):
    commands = []
    monkeypatch.setattr(classroom, "run", lambda command, **kw: commands.append([str(c) for c in command]))
    venv = tmp_path / "venv"
    classroom.venv_python(venv).parent.mkdir(parents=True)
    classroom.venv_python(venv).touch()  # an existing environment: no venv is created
    classroom.setup(venv, **kwargs)
    return venv, commands


def test_offline_setup_never_asks_an_index(monkeypatch, tmp_path, capsys):
    house = tmp_path / "wheelhouse"
    venv, commands = recorded_setup(monkeypatch, tmp_path, wheelhouse=house, torch_index=classroom.CPU_TORCH_INDEX)
    assert len(commands) == 2
    for command in commands:
        assert command[command.index("--no-index") + 1:command.index("--no-index") + 3] == ["--find-links", str(house)]
        assert "--extra-index-url" not in command and "--quiet" not in command
    assert commands[0][-1] == classroom.TORCH_SPEC and commands[1][-2:] == ["-e", ".[dev]"]
    assert (venv / classroom.STAMP_NAME).exists(), "make course would set up again"
    out = capsys.readouterr().out
    assert "[2/3]" in out and "[3/3]" in out and "minute" in out, "each stage says what it does and how long"


def test_online_setup_gets_torch_from_the_given_index(monkeypatch, tmp_path):
    _, commands = recorded_setup(monkeypatch, tmp_path, wheelhouse=None, torch_index=classroom.CPU_TORCH_INDEX)
    assert commands[0][-3:] == ["--extra-index-url", classroom.CPU_TORCH_INDEX, classroom.TORCH_SPEC]
    assert "--no-index" not in commands[1]


def test_makefile_sets_up_through_the_script_and_shows_progress():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP): pyproject.toml", 1)[1].split("\n\n", 1)[0]
    assert "scripts/classroom.py setup" in recipe and "--quiet" not in recipe
    assert "$(WHEELHOUSE)" in recipe and "$(TORCH_INDEX)" in recipe
    assert f"STAMP := $(VENV)/{classroom.STAMP_NAME}" in makefile and "VENV ?= .venv" in makefile
    assert re.search(r"^check-laptop:.*\n\t.*scripts/preclass_check\.py", makefile, re.M)


# --- the pre-class check -------------------------------------------------------------------

def test_preclass_check_passes_here():
    result = subprocess.run([sys.executable, "scripts/preclass_check.py"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("\nPASS  ") == 6 and "All 6 checks passed" in result.stdout
    assert result.stderr.strip() == "", f"a learner would see noise: {result.stderr[-300:]}"


def test_preclass_check_says_what_failed_and_what_to_do(monkeypatch, capsys):
    check = load_script("preclass_check")

    def broken():
        raise ModuleNotFoundError("No module named 'diffusers'")

    monkeypatch.setattr(check, "CHECKS", [("Python 3.10+", check.check_python, "-"),
                                          ("imports", broken, "set up the course first")])
    assert check.main() == 1
    out = capsys.readouterr().out
    assert "PASS  Python 3.10+" in out
    assert "FAIL  imports" in out and "No module named 'diffusers'" in out
    assert "what to do: set up the course first" in out and "1 of 2 checks failed" in out


# --- Colab, as far as it can be tested offline ---------------------------------------------

def install_cell(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "google.colab" in c.source]
    assert len(cells) == 1, f"{path.name}: one Colab install cell"
    return nb.cells.index(cells[0]), cells[0].source


class RecordingShell:
    def __init__(self):
        self.calls = []

    def run_line_magic(self, name, line, *args):
        self.calls.append((name, line))


def run_install_cell(source, in_colab, monkeypatch):
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(source)  # `%pip ...` becomes get_ipython().run_line_magic(...)
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    shell = RecordingShell()
    exec(code, {"get_ipython": lambda: shell})
    return shell.calls


@pytest.mark.parametrize("path", WORKBOOK, ids=lambda p: p.name)
def test_install_cell_is_a_no_op_outside_colab_and_installs_only_the_course_in_colab(path, monkeypatch):
    index, source = install_cell(path)
    code_before = [c for c in nbformat.read(path, as_version=4).cells[:index] if c.cell_type == "code"]
    assert not code_before, "the install cell comes before any import"
    assert run_install_cell(source, in_colab=False, monkeypatch=monkeypatch) == []
    calls = run_install_cell(source, in_colab=True, monkeypatch=monkeypatch)
    assert len(calls) == 1 and calls[0][0] == "pip"
    assert re.fullmatch(r'install (-q )?"responsible-diffusion @ git\+\{REPO_URL\}"', calls[0][1]), (
        f"the install cell must install the course package only: %pip {calls[0][1]}")


@pytest.mark.parametrize("path", WORKBOOK, ids=lambda p: p.name)
def test_learner_notebook_metadata_for_colab(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3" and nb.metadata["kernelspec"]["language"] == "python"
    assert "accelerator" not in nb.metadata, "the learner chooses the runtime: toy on CPU, sd15 on a GPU"


def widget_classes_used(path):
    """`widgets.Name` for every `import ipywidgets as widgets` module of utils."""
    tree = ast.parse(path.read_text())
    aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names if a.name == "ipywidgets"}
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name) and n.value.id in aliases}


def test_widgets_are_core_ipywidgets_that_colab_draws_without_a_custom_manager():
    # Colab ships ipywidgets 7.7.1 and draws its core widgets itself; only third-party widgets need
    # google.colab.output.enable_custom_widget_manager(). So the course uses core widgets only.
    core = {"FloatSlider", "IntSlider", "Dropdown", "Output", "Image", "VBox", "HBox", "Button", "Checkbox",
            "ToggleButtons", "SelectMultiple", "Text", "Label", "HTML", "Layout", "interact", "interactive"}
    used = set()
    for module in (ROOT / "utils").rglob("*.py"):
        used |= widget_classes_used(module)
    assert used, "no widget found: this test no longer looks at the right place"
    assert used <= core, f"not a core widget (Colab would need its custom widget manager): {used - core}"
    for source in SOURCES:
        assert not re.search(r"^(import|from) (ipywidgets|ipyevents|ipycanvas|bqplot)", source.read_text(), re.M), (
            f"{source.name}: widgets come from utils (core ipywidgets only)")


# --- the syllabus and the instructor guide -------------------------------------------------

SYLLABUS = (ROOT / "course" / "README.md").read_text()
GUIDE = (ROOT / "course" / "instructor.md").read_text()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_every_unit_is_in_the_syllabus_and_the_guide(source):
    number = source.name[:2]
    title = re.search(r"^# \d\d · (.+)$", source.read_text(), re.M).group(1)
    assert re.search(rf"^\| {number} \| {re.escape(title)} \|", SYLLABUS, re.M), f"syllabus table: {number}"
    assert f"### Unit {number}: {title}" in SYLLABUS
    assert f"## Unit {number}: {title}" in GUIDE


def test_syllabus_study_times_are_the_notebooks_own():
    for source in SOURCES:
        stated = re.search(r"\*\*Time:\*\* about (\d+) minutes", source.read_text()).group(1)
        row = re.search(rf"^\| {source.name[:2]} \|[^|]+\| (\d+) min \|", SYLLABUS, re.M)
        assert row and row.group(1) == stated, f"{source.name} says {stated} minutes"


def check_messages():
    """Every string literal (and literal piece of an f-string) in utils/checks."""
    found = []
    for path in (ROOT / "utils" / "checks").glob("*.py"):
        found += [n.value for n in ast.walk(ast.parse(path.read_text()))
                  if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return found


def test_common_mistakes_quote_the_checks_as_they_are():
    messages = check_messages()
    section_quotes = []
    for block in re.findall(r"\*\*Common mistakes:\*\*\n(.*?)(?=\n## |\Z)", GUIDE, re.S):
        section_quotes += re.findall(r'"([^"]+)"', " ".join(block.split()))
    assert len(section_quotes) >= 20
    for quote in section_quotes:
        for piece in (p.strip(" .") for p in quote.split("…")):
            if len(piece) > 12:
                assert any(piece in m for m in messages), f"instructor.md quotes a message no check prints: {piece!r}"
