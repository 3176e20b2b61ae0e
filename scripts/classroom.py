"""Set up the course on a laptop, online or from a USB stick, on Linux, macOS or Windows.

    python scripts/classroom.py course                      # set up what is missing, then open JupyterLab
    python scripts/classroom.py setup                       # only set up .venv (torch, the course, JupyterLab)
    python scripts/classroom.py wheelhouse                  # on a connected machine: every wheel, into dist/wheelhouse
    python scripts/classroom.py course --wheelhouse DIR     # on a laptop with no network: install from DIR
    python scripts/classroom.py wheelhouse --plan           # print what would be downloaded, download nothing

On Windows write `py` for `python`. This script does what `make course` does (the Makefile calls
it for its set-up), so it needs only Python 3.10 or newer: no `make`, no shell. Each stage prints
a line with what it does and how long it usually takes; pip shows what it installs as it goes.

A wheelhouse is built for one platform and one Python version: by default this machine's. Build
it on a machine like the laptops, or name theirs (`--platform windows --python 3.12`).
"""

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_SPEC = "torch==2.13.0"  # the Makefile's TORCH_SPEC (a test checks that they agree)
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
BUILD_REQUIREMENTS = ["setuptools>=64", "wheel"]  # to install the course package itself with no network
DEFAULT_WHEELHOUSE = ROOT / "dist" / "wheelhouse"
DEFAULT_VENV = ROOT / ".venv"
STAMP_NAME = ".course-installed"  # the Makefile's set-up stamp: `make course` skips set-up when it exists
START_PAGE = "notebooks/workbook/00_start_here.ipynb"

# pip's names for the platforms a classroom's laptops may have
PLATFORMS = {
    "linux": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"],
    "linux-arm": ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "windows": ["win_amd64"],
    "macos": ["macosx_11_0_arm64", "macosx_12_0_arm64", "macosx_14_0_arm64"],
}


def stage(number: int, total: int, text: str) -> None:
    print(f"\n[{number}/{total}] {text}", flush=True)


def _toml_list(text: str, key: str) -> list[str]:
    """The strings of the list `key = [...]` in pyproject.toml (no tomllib needed on Python 3.10)."""
    match = re.search(rf"^{re.escape(key)} = \[(.*?)^\]", text, re.S | re.M)
    if not match:
        raise ValueError(f"pyproject.toml has no list {key!r}")
    return re.findall(r'^\s*"([^"]+)",?', match.group(1), re.M)


def requirements(pyproject: Path = ROOT / "pyproject.toml", torch_spec: str = TORCH_SPEC) -> list[str]:
    """Everything `pip install -e ".[dev]"` asks for, with torch pinned to `torch_spec`."""
    text = pyproject.read_text()
    found = _toml_list(text, "dependencies") + _toml_list(text, "dev")
    return [torch_spec if re.match(r"torch\b", r) else r for r in found]


def default_torch_index() -> str | None:
    """The CPU index on Linux without an NVIDIA GPU (PyPI's Linux torch is the 2.5 GB CUDA build)."""
    if sys.platform.startswith("linux") and shutil.which("nvidia-smi") is None:
        return CPU_TORCH_INDEX
    return None


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(command: list, **kwargs) -> None:
    print("$ " + " ".join(str(c) for c in command), flush=True)
    started = time.monotonic()
    subprocess.run([str(c) for c in command], check=True, **kwargs)
    print(f"    (done in {time.monotonic() - started:.0f} s)", flush=True)


def wheelhouse_commands(dest: Path, target: str | None = None, python: str | None = None,
                        torch_index: str | None = CPU_TORCH_INDEX, torch_spec: str = TORCH_SPEC) -> list[list[str]]:
    """The pip commands that fill `dest`: torch (CPU build), then everything else, then the build tools."""
    pip = [sys.executable, "-m", "pip", "download", "--dest", str(dest)]
    if target:
        pip += [f"--platform={tag}" for tag in PLATFORMS[target]] + ["--only-binary=:all:"]
    if python:
        pip += ["--python-version", python]
    torch = pip + ["--no-deps", torch_spec] + (["--index-url", torch_index] if torch_index else [])
    rest = pip + ["--find-links", str(dest)] + requirements(torch_spec=torch_spec)  # finds the torch in dest
    build = pip + ["--no-deps"] + BUILD_REQUIREMENTS
    return [torch, rest, build]


def build_wheelhouse(dest: Path, target: str | None, python: str | None, torch_index: str | None,
                     torch_spec: str = TORCH_SPEC) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    where = f"{target or 'this machine'}, Python {python or platform.python_version()}"
    print(f"Building a wheelhouse for {where} in {dest}")
    commands = wheelhouse_commands(dest, target, python, torch_index, torch_spec)
    texts = [f"torch ({torch_spec}, {'from ' + torch_index if torch_index else 'from PyPI'}): about 200 MB "
             "for the CPU build, one to a few minutes",
             "the course's other packages and JupyterLab (about 140 wheels, 130 MB): one to a few minutes",
             "the build tools that install the course package itself (a few seconds)"]
    for k, (command, text) in enumerate(zip(commands, texts), 1):
        stage(k, len(commands), text)
        run(command)
    size = sum(f.stat().st_size for f in dest.iterdir()) / 2**20
    print(f"\nWheelhouse ready: {len(list(dest.iterdir()))} files, {size:.0f} MiB in {dest}.\n"
          "Copy the whole course folder (with this wheelhouse in it) to a USB stick; on each laptop run\n"
          f"    python scripts/classroom.py course --wheelhouse {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")


def setup(venv: Path, wheelhouse: Path | None, torch_index: str | None, torch_spec: str = TORCH_SPEC,
          python: str = sys.executable) -> None:
    """Create `venv` and install torch, then the course package with its dev tools, then stamp it."""
    started = time.monotonic()
    offline = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
    source = f"from the wheelhouse {wheelhouse} (no network)" if wheelhouse else "from the network"
    speed = ("1-4 minutes" if wheelhouse else "1-3 minutes on a good network")
    speed += "; pip prints nothing while it unpacks torch"
    total = 3
    if not venv_python(venv).exists():
        stage(1, total, f"creating the virtual environment {venv} (a few seconds)")
        try:
            run([python, "-m", "venv", venv])
        except subprocess.CalledProcessError:
            raise SystemExit("Could not create a virtual environment (on Debian/Ubuntu: apt install python3-venv)")
    else:
        stage(1, total, f"using the virtual environment {venv}")
    pip = [venv_python(venv), "-m", "pip", "install", "--disable-pip-version-check", *offline]
    if torch_index and not wheelhouse:
        where = "the CPU build" if torch_index == CPU_TORCH_INDEX else torch_index
        stage(2, total, f"installing {torch_spec}, {where}, {source}: about 200 MB, {speed}")
        run(pip + ["--extra-index-url", torch_index, torch_spec])
    else:
        build = "the build in the wheelhouse" if wheelhouse else "PyPI's build (CUDA on Linux, 2.5 GB)"
        stage(2, total, f"installing {torch_spec}, {build}, {source}: {speed}")
        run(pip + [torch_spec])
    stage(3, total, "installing the course package, its libraries and JupyterLab (about 120 packages), "
          f"{source}: {'1-4 minutes' if wheelhouse else '2-5 minutes'}")
    run(pip + ["-e", ".[dev]"], cwd=ROOT)
    (venv / STAMP_NAME).touch()
    print(f"\nSet-up done in {time.monotonic() - started:.0f} s: {venv}. "
          "Check this laptop with: python scripts/preclass_check.py", flush=True)


def start_course(venv: Path, profile: str, port: int, extra: list[str]) -> None:
    """Start JupyterLab at the start page of the learner notebooks (stops with Ctrl+C)."""
    command = [venv_python(venv), "-m", "jupyter", "lab", f"--port={port}", f"--ServerApp.root_dir={ROOT}",
               f"--LabApp.default_url=/lab/tree/{START_PAGE}", *extra]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")  # containers often run as root; JupyterLab refuses without it
    print(f"\nStarting JupyterLab with COURSE_PROFILE={profile}; stop it with Ctrl+C.", flush=True)
    try:
        subprocess.run([str(c) for c in command], env={**os.environ, "COURSE_PROFILE": profile}, cwd=ROOT)
    except KeyboardInterrupt:
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("setup", "course"):
        p = sub.add_parser(name)
        p.add_argument("--wheelhouse", type=Path, help="install from this folder, with no network")
        p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
        p.add_argument("--torch-index", default=os.environ.get("TORCH_INDEX") or default_torch_index(),
                       help="extra index for torch, or 'pypi' for PyPI's build (default: the CPU index on Linux "
                            "without nvidia-smi, where PyPI's torch is the 2.5 GB CUDA build)")
    course = sub.choices["course"]
    course.add_argument("--profile", default=os.environ.get("COURSE_PROFILE", "toy"))
    course.add_argument("--port", type=int, default=8888)
    course.add_argument("jupyter_args", nargs="*", help="passed to jupyter lab (after --)")
    house = sub.add_parser("wheelhouse")
    house.add_argument("--dest", type=Path, default=DEFAULT_WHEELHOUSE)
    house.add_argument("--platform", choices=sorted(PLATFORMS), help="the laptops' platform (default: this one)")
    house.add_argument("--python", help="the laptops' Python version, e.g. 3.11 (default: this one)")
    house.add_argument("--torch-index", default=CPU_TORCH_INDEX,
                       help="where the CPU build of torch comes from (default: %(default)s)")
    house.add_argument("--plan", action="store_true", help="print the pip commands, download nothing")
    for p in (sub.choices["setup"], course, house):
        p.add_argument("--torch-spec", default=TORCH_SPEC, help="default: %(default)s")
    args = parser.parse_args(argv)
    if args.torch_index in ("pypi", "none", ""):
        args.torch_index = None

    if args.command == "wheelhouse":
        if args.plan:
            for command in wheelhouse_commands(args.dest, args.platform, args.python, args.torch_index,
                                               args.torch_spec):
                print(" ".join(command))
            return 0
        build_wheelhouse(args.dest.resolve(), args.platform, args.python, args.torch_index, args.torch_spec)
        return 0
    if sys.version_info < (3, 10):
        print("Python 3.10 or newer is needed (on Windows: py -3.11 scripts/classroom.py ...)")
        return 1
    venv = args.venv.resolve()
    wheelhouse = args.wheelhouse.resolve() if args.wheelhouse else None
    if wheelhouse and not any(wheelhouse.glob("torch-*.whl")):
        print(f"{wheelhouse} holds no torch wheel: build it with `python scripts/classroom.py wheelhouse`.")
        return 1
    try:
        if args.command == "setup" or not (venv / STAMP_NAME).exists():
            setup(venv, wheelhouse, args.torch_index, args.torch_spec)
    except subprocess.CalledProcessError as err:
        print(f"\nSet-up failed ({err}). Read pip's message above; without a network, use --wheelhouse.")
        return 1
    if args.command == "course":
        start_course(venv, args.profile, args.port, args.jupyter_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
