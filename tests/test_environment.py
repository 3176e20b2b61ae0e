"""pyproject.toml, environment.yml and the Makefile describe the same environment.

pyproject.toml holds lower bounds only, all met by Google Colab, so installing
the course there never replaces Colab's own packages; environment.yml lists the
same packages with the same bounds, and pins torch to the version the
Makefile installs.
"""

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# Colab's preinstalled versions (../shared/FACTS.md): the package must accept them as they are.
COLAB = {"python": "3.13", "torch": "2.11.0", "diffusers": "0.39.0", "transformers": "5.15.0",
         "numpy": "2.1.0", "ipywidgets": "7.7.1", "jupytext": "1.19.0"}


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pyproject_requirements():
    project = pyproject()["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def conda_environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def environment_pip_lines():
    deps = conda_environment()["dependencies"]
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    return pip_sections[0]


def environment_requirements():
    requirements = {}
    for line in environment_pip_lines():
        if line.startswith("-"):  # pip options: --extra-index-url ..., -e .
            continue
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name not in requirements, f"{name} is listed twice in environment.yml"
        requirements[name] = requirement
    return requirements


def test_same_packages_in_both():
    in_pyproject, in_environment = set(pyproject_requirements()), set(environment_requirements())
    assert in_pyproject - in_environment == set(), "in pyproject.toml but not in environment.yml"
    assert in_environment - in_pyproject == set(), "in environment.yml but not in pyproject.toml"


def test_same_bounds_in_both_except_the_torch_pin():
    environment = environment_requirements()
    for name, requirement in pyproject_requirements().items():
        if name == "torch":
            continue
        assert environment[name].specifier == requirement.specifier, (
            f"{name}: pyproject.toml says {requirement.specifier}, environment.yml {environment[name].specifier}"
        )


def test_torch_pin_is_the_makefiles_and_meets_pyproject():
    pin = environment_requirements()["torch"].specifier
    assert len(pin) == 1 and next(iter(pin)).operator == "=="
    version = next(iter(pin)).version
    assert version in pyproject_requirements()["torch"].specifier
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^TORCH_SPEC \?= torch=={re.escape(version)}$", makefile, re.M), "Makefile installs another torch"


def test_environment_installs_the_package_itself():
    assert "-e ." in environment_pip_lines()


def test_conda_python_meets_requires_python():
    pythons = [d for d in conda_environment()["dependencies"] if isinstance(d, str) and re.match(r"python\b", d)]
    assert len(pythons) == 1
    version = pythons[0].split("=", 1)[1].strip("=")
    assert Version(version) in SpecifierSet(pyproject()["project"]["requires-python"])


def test_pyproject_has_lower_bounds_only():
    # no pins and no upper bounds: Colab (and learners' own environments) keep their versions
    for name, requirement in pyproject_requirements().items():
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">="}, f"{name}: use a lower bound only, not {requirement.specifier}"


@pytest.mark.parametrize("package", sorted(set(COLAB) - {"python"}))
def test_colab_already_meets_the_bounds(package):
    requirement = pyproject_requirements()[package]
    assert Version(COLAB[package]) in requirement.specifier, f"{package} {COLAB[package]} (Colab) is refused"


def test_colab_python_is_allowed():
    assert Version(COLAB["python"]) in SpecifierSet(pyproject()["project"]["requires-python"])


def test_toy_weights_travel_with_the_package():
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["utils"]
    for extension in ("json", "txt", "md", "safetensors"):
        assert f"weights/**/*.{extension}" in patterns
