"""Check a laptop before class, in under a minute: is it ready for the course?

    python scripts/preclass_check.py            # with the course's environment active, or:
    .venv/bin/python scripts/preclass_check.py   # (Windows: .venv\\Scripts\\python scripts\\preclass_check.py)
    make check-laptop

Runs six checks on the toy profile, offline, and prints PASS or FAIL for each, with what to do
about a failure: Python, the imports, the toy model loads, one 20-step generation, the first cells
of notebook 00 in a Jupyter kernel, and JupyterLab starting (on a free port of 127.0.0.1, then
stopped). Exits with 0 only if every check passed.
"""

import atexit
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = ROOT / "notebooks" / "workbook" / "00_start_here.ipynb"
SETUP_HINT = "set up the course first: `make course` or `python scripts/classroom.py setup`"


def check_python():
    if sys.version_info < (3, 10):
        raise RuntimeError("Python 3.10 or newer is needed; install it, then set up the course again")
    return f"Python {sys.version.split()[0]} at {sys.executable}"


def check_imports():
    import diffusers
    import ipywidgets
    import jupyterlab
    import nbclient  # noqa: F401 (runs the notebook check)
    import torch
    import transformers

    import utils  # noqa: F401

    return (f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers "
            f"{transformers.__version__}, ipywidgets {ipywidgets.__version__}, jupyterlab {jupyterlab.__version__}")


STATE = {}


def check_model():
    from utils.models import load_pipeline

    STATE["pipe"] = load_pipeline("toy", device="cpu")
    return f"{type(STATE['pipe']).__name__} with its safety checker, on the CPU"


def check_generation():
    import numpy as np

    from utils.gpu import make_generator

    pipe = STATE.get("pipe")
    if pipe is None:
        raise RuntimeError("the model did not load (see above)")
    started = time.monotonic()
    image = pipe("a red circle", num_inference_steps=20, generator=make_generator(0)).images[0]
    pixels = np.asarray(image)
    if pixels.ndim != 3 or not np.isfinite(pixels).all() or pixels.std() == 0:
        raise RuntimeError(f"the image is not a picture: shape {pixels.shape}, std {pixels.std():.3f}")
    return f"one {image.size[0]}x{image.size[1]} image in {time.monotonic() - started:.1f} s"


def check_notebook():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(START, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    upto = next(k for k, c in enumerate(code) if c.source.strip() == "report.profile")  # install, preflight, profile
    nb.cells = code[:upto + 1]
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}},
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no start-up chatter
    try:
        client.execute()
    finally:
        atexit.unregister(client._cleanup_kernel)  # execute() has stopped the kernel, even on failure
    shown = "".join(str(o.get("data", {}).get("text/plain", "")) for o in nb.cells[-1].outputs)
    if shown != "'toy'":
        raise RuntimeError(f"the preflight chose the profile {shown or 'nothing'}, not 'toy'")
    return f"the first {len(nb.cells)} code cells of {START.name} ran in a Jupyter kernel; profile 'toy'"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(root_dir, *options, env=None):
    """JupyterLab on a free 127.0.0.1 port serving `root_dir`, stopped on leaving the block.

    Yields `(base_url, token, process, log)`; `log` is a file holding JupyterLab's messages
    (a file, not a pipe, so a long session never blocks on a full pipe). `options` are more
    command-line options. The browser test (`tests/test_browser.py`) starts its JupyterLab
    with this too.
    """
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
               *options]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True, env=env, cwd=root_dir)
        try:
            yield f"http://127.0.0.1:{port}", token, server, log
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


def check_jupyterlab(timeout: float = 45):
    started = time.monotonic()
    with jupyterlab(ROOT) as (base, token, server, log):
        while time.monotonic() - started < timeout:
            if server.poll() is not None:
                log.seek(0)
                raise RuntimeError("JupyterLab stopped at once: " + log.read()[-400:].strip())
            try:
                with urllib.request.urlopen(f"{base}/lab?token={token}", timeout=2) as page:
                    if page.status == 200 and b"jupyter" in page.read().lower():
                        return (f"answered on {base.removeprefix('http://')} after {time.monotonic() - started:.1f} s"
                                " (then stopped)")
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s")


CHECKS = [
    ("Python 3.10+", check_python, "install Python 3.11 from python.org (Windows: tick 'Add to PATH')"),
    ("imports", check_imports, SETUP_HINT + ", then run this check with the course's Python (.venv)"),
    ("toy model loads", check_model, "reinstall the course (its folder utils/weights/ holds the toy model)"),
    ("one 20-step generation", check_generation, "see the message; close other programs and try again"),
    ("notebook 00 runs in a kernel", check_notebook, SETUP_HINT + " (it installs ipykernel); if the kernel did "
                                                      "not respond, a firewall or VPN may block 127.0.0.1"),
    ("JupyterLab starts", check_jupyterlab, "another program may block local ports; restart the laptop, "
                                            "or start it by hand: `make course` and read its message"),
]


def main() -> int:
    sys.path.insert(0, str(ROOT))  # `utils` from this folder, also before `pip install -e .`
    os.environ["COURSE_PROFILE"] = "toy"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the toy profile needs no network
    print(f"Pre-class check of this laptop for the Responsible Diffusion course ({ROOT})", flush=True)
    started, failed = time.monotonic(), []
    for name, check, fix in CHECKS:
        t0 = time.monotonic()
        try:
            detail = check()
        except Exception as err:  # every failure is reported, never a bare stack trace
            failed.append(name)
            last = traceback.extract_tb(err.__traceback__)[-1]
            print(f"FAIL  {name:30} {type(err).__name__}: {err} ({Path(last.filename).name}:{last.lineno})")
            print(f"      what to do: {fix}", flush=True)
        else:
            print(f"PASS  {name:30} {detail} [{time.monotonic() - t0:.1f} s]", flush=True)
    total = time.monotonic() - started
    if failed:
        print(f"\n{len(failed)} of {len(CHECKS)} checks failed in {total:.0f} s: {', '.join(failed)}.")
        return 1
    print(f"\nAll {len(CHECKS)} checks passed in {total:.0f} s: this laptop is ready for the course.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
