"""The Thai edition (course/th/, notebooks/th/, notebooks/workbook/th/, README.th.md) stays in
step with the English one: the same code cells, paired and executed like the English notebooks,
learner copies with Colab badges, the course's messages in Thai when `COURSE_LANG=th`, and the
glossary's spelling of every term it lists."""

import ast
import importlib.util
import os
import re
import string
from pathlib import Path

import jupytext
import nbformat
import pytest

from utils import i18n

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "course" / "th").glob("[0-9][0-9]_*.md"))
NOTEBOOKS = sorted((ROOT / "notebooks" / "th").glob("*.ipynb"))
LANGUAGE_CELL = "%env COURSE_LANG=th"
"""The one code cell a Thai notebook adds to its English twin, just before the preflight."""

spec = importlib.util.spec_from_file_location("learner_notebooks", ROOT / "scripts" / "learner_notebooks.py")
learner_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(learner_notebooks)


def code_cells(notebook):
    """What must agree between twins: each code cell's source and tags."""
    return [(c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in notebook.cells if c.cell_type == "code"]


def twin_differences(thai, english) -> list[str]:
    """How the Thai notebook's code cells differ from its English twin's (empty: in step).
    The Thai notebook has one more code cell, `LANGUAGE_CELL`, before the first that imports `utils`."""
    thai_code, english_code = code_cells(thai), code_cells(english)
    language = [i for i, (source, _) in enumerate(thai_code) if source == LANGUAGE_CELL]
    if len(language) != 1:
        return [f"{len(language)} cells `{LANGUAGE_CELL}` (one is needed)"]
    first_utils = next((i for i, (source, _) in enumerate(thai_code) if re.search(r"^import utils", source, re.M)), None)
    problems = [] if first_utils is not None and language[0] < first_utils else [
        f"`{LANGUAGE_CELL}` must come before the first cell that imports utils"]
    del thai_code[language[0]]
    for index, (a, b) in enumerate(zip(thai_code, english_code)):
        if a != b:
            problems.append(f"code cell {index}: {a[0][:60]!r} != English {b[0][:60]!r}")
    if len(thai_code) != len(english_code):
        problems.append(f"{len(thai_code)} code cells (without the language cell), English has {len(english_code)}")
    return problems


# ----------------------------------------------------------------------------------------------
# Pairing and execution, as tests/test_pairing.py checks the English notebooks
# ----------------------------------------------------------------------------------------------


def test_the_thai_edition_has_notebooks_00_and_01():
    assert [p.name for p in SOURCES] == ["00_start_here.md", "01_toy_world.md"]
    assert [p.stem for p in NOTEBOOKS] == [p.stem for p in SOURCES], "run `make sync`"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_thai_source_and_notebook_have_the_same_cells(source):
    notebook = ROOT / "notebooks" / "th" / f"{source.stem}.ipynb"
    from_source, from_notebook = jupytext.read(source), jupytext.read(notebook)
    cells = [[(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]
             for nb in (from_source, from_notebook)]
    assert cells[0] == cells[1], f"{source.name} and {notebook.name} differ: run `make sync`"
    assert from_source.metadata["kernelspec"]["name"] == "python3"


def test_jupytext_pairs_the_thai_folders():
    from jupytext.paired_paths import paired_paths
    from jupytext.config import load_jupytext_config

    formats = load_jupytext_config(str(ROOT / "course" / "th")).default_formats(str(SOURCES[0]))
    paths = {Path(p).relative_to(ROOT).as_posix() for p, _ in paired_paths(str(SOURCES[0]), "md", formats)}
    assert paths == {"course/th/00_start_here.md", "notebooks/th/00_start_here.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_thai_notebook_was_executed_top_to_bottom_without_errors_or_noise(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run `make execute`"
    for index, cell in enumerate(code):
        assert not any(o.output_type == "error" for o in cell.outputs), f"cell {index} holds an error"
        if "stderr" not in cell.metadata.get("tags", []):
            assert not any(o.get("name") == "stderr" for o in cell.outputs), f"cell {index} wrote to stderr"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_thai_notebook_speaks_thai(path):
    """The checks' verdicts, saved in the executed notebook, are the Thai ones."""
    nb = nbformat.read(path, as_version=4)
    checks = [c for c in nb.cells if c.cell_type == "code" and "check_" in c.source]
    text = "".join(o.get("text", "") for c in checks for o in c.outputs)
    assert checks and text.count(i18n.TH["Correct!"]) == len(checks), text


# ----------------------------------------------------------------------------------------------
# The code twin: the same code as the English notebook
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_thai_notebook_has_the_code_cells_of_its_english_twin(path):
    thai = nbformat.read(path, as_version=4)
    english = nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
    assert twin_differences(thai, english) == [], "copy the English code cells into course/th/ and `make sync`"


def test_twin_check_catches_drift():
    english = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 00 · Start here"),
        nbformat.v4.new_code_cell("import utils\nreport = utils.preflight()"),
        nbformat.v4.new_code_cell("answer = ...", metadata={"tags": ["solution"]}),
    ])
    thai = nbformat.from_dict(english)
    thai.cells[0].source = "# 00 · เริ่มที่นี่"
    thai.cells.insert(1, nbformat.v4.new_code_cell(LANGUAGE_CELL))
    assert twin_differences(thai, english) == []
    drifted = nbformat.from_dict(thai)
    drifted.cells[2].source = "import utils\nreport = utils.preflight(verbose=False)"
    assert "code cell 0" in twin_differences(drifted, english)[0]
    untagged = nbformat.from_dict(thai)
    untagged.cells[3].metadata["tags"] = []
    assert twin_differences(untagged, english)
    late = nbformat.from_dict(thai)
    late.cells.insert(4, late.cells.pop(1))
    assert any("before the first cell" in p for p in twin_differences(late, english))
    no_language = nbformat.from_dict(english)
    assert twin_differences(no_language, english) == [f"0 cells `{LANGUAGE_CELL}` (one is needed)"]
    extra = nbformat.from_dict(thai)
    extra.cells.append(nbformat.v4.new_code_cell("print('extra')"))
    assert twin_differences(extra, english)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_thai_source_has_the_sections_of_its_english_twin(source):
    """Same numbered sections (## 1. ... ## 7.) and the same number of exercises and questions."""
    def outline(path):
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
        sections = re.findall(r"^## (\d+)\.", text, re.M)
        exercises = re.findall(r"^### \S+ (\d+): ", text, re.M)
        questions = re.search(r"^## (?:Questions|คำถาม)\n(.*?)^## ", text, re.M | re.S).group(1)
        return sections, exercises, re.findall(r"^(\d+)\. ", questions, re.M)

    assert outline(source) == outline(ROOT / "course" / source.name)


# ----------------------------------------------------------------------------------------------
# Learner copies (notebooks/workbook/th/) and their Colab badges (README.th.md)
# ----------------------------------------------------------------------------------------------

THAI_WORKBOOK = sorted((learner_notebooks.WORKBOOK / "th").glob("*.ipynb"))
README_TH = (ROOT / "README.th.md").read_text()
COLAB_LINK = re.compile(
    r"https://colab\.research\.google\.com/github/(?P<repo>[\w.-]+/[\w.-]+)/blob/(?P<branch>[\w.-]+)/(?P<path>[^)\s\"']+)")
BADGES = list(COLAB_LINK.finditer(README_TH))


def test_every_thai_notebook_has_an_up_to_date_learner_copy():
    assert [p.name for p in THAI_WORKBOOK] == [p.name for p in NOTEBOOKS], "run `make learner`"
    assert {(p, learner_notebooks.WORKBOOK / "th" / p.name) for p in NOTEBOOKS} <= set(learner_notebooks.learner_paths())
    for teacher in NOTEBOOKS:  # what `make learner` writes (and its --check compares), for the Thai ones only
        learner = learner_notebooks.learner_version(nbformat.read(teacher, as_version=4))
        target = learner_notebooks.WORKBOOK / "th" / teacher.name
        assert target.read_text() == nbformat.writes(learner) + "\n", f"{target.name} is stale: run `make learner`"


@pytest.mark.parametrize("path", THAI_WORKBOOK, ids=lambda p: p.name)
def test_thai_learner_copy_is_the_english_learner_copy_in_thai(path):
    thai = nbformat.read(path, as_version=4)
    assert not any("solution" in c.metadata.get("tags", []) or c.get("outputs") for c in thai.cells)
    assert "jupytext" not in thai.metadata
    english = nbformat.read(learner_notebooks.WORKBOOK / path.name, as_version=4)
    assert twin_differences(thai, english) == []


def test_saving_a_thai_learner_notebook_never_writes_to_course():
    from jupytext.config import load_jupytext_config

    folder = learner_notebooks.WORKBOOK / "th"
    assert load_jupytext_config(str(folder)).default_formats(str(folder / "00_start_here.ipynb")) == "ipynb"


def test_untouched_thai_learner_notebook_00_runs_and_says_not_yet_in_thai():
    """01's learner copy has the code of the English one, which tests/test_workbook.py runs."""
    from nbclient import NotebookClient

    nb = nbformat.read(learner_notebooks.WORKBOOK / "th" / "00_start_here.ipynb", as_version=4)
    env = {**os.environ, "COURSE_PROFILE": "toy", "HF_HUB_OFFLINE": "1"}
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.km = client.create_kernel_manager()
    client.km.extra_env = env
    client.execute(env=env)
    checks = [c for c in nb.cells if c.cell_type == "code" and "check_" in c.source]
    not_yet = i18n.TH["Not yet solved: {hint}"].split(":")[0]
    assert len(checks) == 3
    assert all(not_yet in "".join(o.get("text", "") for o in c.outputs) for c in checks)


def test_readme_links_the_thai_edition_at_the_top():
    top = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert "](README.th.md)" in top


def test_thai_badges_open_every_thai_learner_copy_in_the_course_repository():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    repo = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert BADGES
    for badge in BADGES:
        assert f"https://github.com/{badge['repo']}" == repo and badge["branch"] == "main"
        assert badge["path"].startswith("notebooks/workbook/th/"), "Colab badges open the learner copies"
        assert (ROOT / badge["path"]).is_file(), f"{badge['path']} does not exist"
    assert sorted(b["path"] for b in BADGES) == [p.relative_to(ROOT).as_posix() for p in THAI_WORKBOOK]


# ----------------------------------------------------------------------------------------------
# Messages: English by default, Thai with COURSE_LANG=th, and every message translated
# ----------------------------------------------------------------------------------------------


def test_messages_are_english_by_default(monkeypatch, capsys):
    from utils.checks import start

    monkeypatch.delenv("COURSE_LANG", raising=False)
    assert i18n.language() == "en"
    assert not start.check_forced_profile(...)
    assert capsys.readouterr().out.startswith("Not yet solved: set answer")
    monkeypatch.setenv("COURSE_LANG", "")
    assert i18n.tr("Correct!") == "Correct!"


def test_messages_are_thai_with_course_lang_th(monkeypatch, capsys):
    from utils import models
    from utils.checks import start

    monkeypatch.setenv("COURSE_LANG", " TH ")
    monkeypatch.setenv("COURSE_PROFILE", "sd15")
    assert start.check_forced_profile("toy")
    assert not start.check_forced_profile("sd15")
    assert not start.check_forced_profile(...)
    assert capsys.readouterr().out.splitlines() == [
        "ถูกต้อง! " + i18n.TH["a profile you name wins over what auto would pick."],
        "ยังไม่ถูก: " + i18n.TH["auto would pick sd15 there, but is auto asked at all? "
                                "Read the order in 'Choosing a profile'."],
        'ยังไม่ได้ทำข้อนี้: ตั้งค่า answer เป็น "toy" หรือ "sd15"',
    ]
    assert models.resolve_profile("toy") == ("toy", "ระบุด้วย profile='toy'")
    with pytest.raises(ValueError, match="ไม่รู้จักโปรไฟล์ 'sdxl'.*toy, sd15, auto"):
        models.resolve_profile("sdxl")


def test_unknown_language_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_LANG", "fr")
    with pytest.raises(ValueError, match=r"Unknown language 'fr' \(from COURSE_LANG=fr\)\. Valid languages: en, th"):
        i18n.tr("Correct!")


def translation_problems(sources: dict[str, str], catalogue: dict[str, str]) -> list[str]:
    """Every `tr(...)` call in `sources` ({name: Python text}) has a literal English message with a
    translation in `catalogue` that has the same `{fields}`; every translation is used."""
    def fields(text):
        return sorted(f for _, f, _, _ in string.Formatter().parse(text) if f is not None)

    problems, used = [], set()
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "tr":
                message = node.args[0] if node.args else None
                if not (isinstance(message, ast.Constant) and isinstance(message.value, str)):
                    problems.append(f"{name}:{node.lineno}: tr() needs a literal English message")
                elif message.value not in catalogue:
                    problems.append(f"{name}:{node.lineno}: no Thai for {message.value[:50]!r}")
                else:
                    used.add(message.value)
                    if fields(message.value) != fields(catalogue[message.value]):
                        problems.append(f"{name}:{node.lineno}: the Thai has other fields than {message.value[:50]!r}")
    problems += [f"unused translation {m[:50]!r}" for m in catalogue if m not in used]
    return problems


def test_every_message_has_a_thai_translation_and_every_translation_is_used():
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "utils").rglob("*.py"))}
    assert translation_problems(sources, i18n.TH) == []
    assert all(th != en for en, th in i18n.TH.items()), "a 'translation' equal to the English"


def test_translation_check_catches_gaps():
    catalogue = {"Correct!": "ถูกต้อง!", "it is {x!r}.": "เป็น {y!r}"}
    problems = translation_problems({"m.py": "tr('Correct!')\ntr('it is {x!r}.', x=1)\ntr('new')\ntr(name)"}, catalogue)
    assert problems == ["m.py:2: the Thai has other fields than 'it is {x!r}.'", "m.py:3: no Thai for 'new'",
                        "m.py:4: tr() needs a literal English message"]
    assert translation_problems({"m.py": "tr('Correct!')"}, catalogue) == ["unused translation 'it is {x!r}.'"]


def table_numbers(markdown: str) -> list[str]:
    """The numbers in a page's table rows (unit numbers, times, sections), in order; link targets left out."""
    rows = [re.sub(r"\]\([^)]*\)", "]", line) for line in markdown.splitlines() if line.startswith("| ")]
    return [n for row in rows for n in re.findall(r"\d+(?:[.:]\d+)?", row)]


def test_thai_syllabus_is_in_step_with_the_english_one():
    """Same units, times and sections in every table: change course/th/README.md with course/README.md."""
    english, thai = (ROOT / "course" / "README.md").read_text(), (ROOT / "course" / "th" / "README.md").read_text()
    assert table_numbers(thai) == table_numbers(english)
    assert len(re.findall(r"^#{2,3} ", thai, re.M)) == len(re.findall(r"^#{2,3} ", english, re.M))
    drifted = re.sub(r"\| (\d+) s \|", lambda m: f"| {int(m.group(1)) + 1} s |", thai, count=1)  # one run time
    assert drifted != thai and table_numbers(drifted) != table_numbers(english)


# ----------------------------------------------------------------------------------------------
# The glossary (course/th/glossary.md): each term spelled as the glossary spells it
# ----------------------------------------------------------------------------------------------

GLOSSARY = ROOT / "course" / "th" / "glossary.md"
REFERENCE = ROOT.parent / "shared" / "reference" / "ethical-guidelines-th.md"
THAI_TEXTS = SOURCES + [ROOT / "README.th.md"] + sorted((ROOT / "course" / "th").glob("README.md"))


def glossary() -> list[dict]:
    """The glossary's rows: english, thai, explanation, source, avoid (a list of spellings)."""
    rows = []
    for line in GLOSSARY.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5 and cells[0] not in ("English", "---"):
            english, thai, explanation, source, avoid = cells
            rows.append(dict(english=english, thai=thai, explanation=explanation, source=source,
                             avoid=[a.strip() for a in avoid.split(",") if a.strip()]))
    return rows


def prose(markdown: str) -> str:
    """The text a reader reads: without code blocks and inline code."""
    return re.sub(r"`[^`\n]*`", " ", re.sub(r"^```.*?^```", " ", markdown, flags=re.M | re.S))


def spelling_problems(text: str, entries: list[dict]) -> list[str]:
    """Where `text` strays from the glossary: a spelling to avoid, or an English term used
    without its Thai term anywhere in the text. Longer English terms are read first, so that
    "latent" is not found in "Safe Latent Diffusion"."""
    problems = []
    body = remaining = prose(text)
    for entry in entries:
        problems += [f"{entry['english']}: write {entry['thai']!r}, not {a!r}" for a in entry["avoid"] if a in body]
    for entry in sorted(entries, key=lambda e: -len(e["english"])):
        english = re.compile(rf"(?<![\w-]){re.escape(entry['english'])}(s|es)?(?![\w-])", re.I)
        if english.search(remaining) and entry["thai"] not in body:
            problems.append(f"{entry['english']!r} is used, but not its Thai term {entry['thai']!r}")
        remaining = english.sub(" ", remaining)
    return problems


def test_glossary_rows_are_complete_and_unambiguous():
    entries = glossary()
    assert len(entries) >= 40
    assert len({e["english"].lower() for e in entries}) == len(entries), "an English term listed twice"
    for e in entries:
        assert e["thai"] and e["explanation"] and e["source"] in ("อ้างอิง", "ดัดแปลง", "ตั้งเอง"), e
        for other in entries:  # a spelling to avoid must never be part of a term the glossary asks for
            assert not [a for a in e["avoid"] if a in other["thai"]], (e["english"], other["english"])
    principles = {e["english"]: e["thai"] for e in entries}
    assert [principles[p] for p in ("transparency", "consistency", "simplicity", "accessibility",
                                    "reproducibility", "responsibility")] == [
        "ความโปร่งใส", "ความสอดคล้อง", "ความเรียบง่าย", "ความเข้าถึงได้", "ความสามารถในการทำซ้ำ", "ความรับผิดชอบ"]


@pytest.mark.skipif(not REFERENCE.exists(), reason="the reference document is outside the repository")
def test_glossary_terms_marked_reference_are_the_reference_documents():
    reference = REFERENCE.read_text()
    for e in glossary():
        if e["source"] == "อ้างอิง":
            assert e["thai"] in reference, f"{e['thai']!r} is not in the reference document"


@pytest.mark.parametrize("path", THAI_TEXTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_thai_text_spells_every_term_as_the_glossary(path):
    assert spelling_problems(path.read_text(), glossary()) == []


def test_thai_messages_use_the_glossary_spellings():
    avoid = {a: e["thai"] for e in glossary() for a in e["avoid"]}
    assert [(a, th) for th in i18n.TH.values() for a in avoid if a in th] == []


def test_spelling_check_catches_a_misspelt_or_missing_term():
    entries = glossary()
    text = SOURCES[0].read_text()
    assert spelling_problems(text, entries) == []
    misspelt = text.replace("พรอมต์", "พรอมท์", 1)
    assert spelling_problems(misspelt, entries) == ["prompt: write 'พรอมต์', not 'พรอมท์'"]
    reference_word = text.replace("ความเรียบง่าย", "ความเป็นไปได้")
    assert "simplicity: write 'ความเรียบง่าย', not 'ความเป็นไปได้'" in spelling_problems(reference_word, entries)
    english_only = text.replace("ตัวตรวจสอบความปลอดภัย", "safety checker")
    assert spelling_problems(english_only, entries) == [
        "'safety checker' is used, but not its Thai term 'ตัวตรวจสอบความปลอดภัย'"]
    in_code_only = "ใช้ `safety_checker` และ\n```python\nchecker = 'safety checker'\n```\n"
    assert spelling_problems(in_code_only, entries) == []
