"""pytest settings that apply to the unit tests and to the notebooks nbval runs.

Notebooks run in kernels that inherit this process's environment, so the
profile chosen here is the one the notebooks use: `toy` unless COURSE_PROFILE
says otherwise (`make test TEST_PROFILE=sd15` on a GPU machine with the Hub).
"""

import os
from pathlib import Path

os.environ.setdefault("COURSE_PROFILE", "toy")
if os.environ["COURSE_PROFILE"].strip().lower() == "toy":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the toy profile never needs the network

# The learner notebooks hold no outputs to compare: tests/test_workbook.py runs them instead.
collect_ignore_glob = ["notebooks/workbook/*"]

NBVAL_SANITIZE_FILE = Path(__file__).parent / "tests" / "nbval_sanitize.cfg"


def pytest_configure(config):
    # nbval reads this option when it starts each notebook; an absolute path
    # works from any directory, which `--nbval-sanitize-with` in addopts would not.
    if getattr(config.option, "nbval_sanitize_with", "unset") is None:
        config.option.nbval_sanitize_with = str(NBVAL_SANITIZE_FILE)
