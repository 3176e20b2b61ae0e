# Responsible Diffusion: the two commands of the README, and helpers.
#
#   make course        set up what is missing, then open JupyterLab at the start page
#   make test          set up what is missing, then run the tests (unit tests + every notebook)
#   make check-laptop  check this laptop for class in about a minute (pass/fail per item)
#   make wheelhouse    download every wheel the course needs into dist/wheelhouse (for a USB stick)
#   make sync          update notebooks/*.ipynb from course/*.md, keeping outputs
#   make execute       `make sync`, then re-run every notebook in place (toy profile, offline)
#   make learner       the learner notebooks (workbook), solutions removed: notebooks/workbook/
#
# Set-up happens once (scripts/classroom.py setup, which prints each stage and
# its usual time): a virtual environment in .venv with torch, then this package
# and its development tools. It is redone only when pyproject.toml changes (or
# after `make clean`). Variables you can override:
#
#   make course COURSE_PROFILE=auto                        use the GPU if there is one
#   make test PYTEST_ARGS="tests -x"                       only the unit tests, stop at the first failure
#   make course WHEELHOUSE=dist/wheelhouse                 install with no network, from a wheelhouse
#   make course TORCH_INDEX=pypi                           PyPI's torch (on Linux: the CUDA build, 2.5 GB);
#                                                          the default on Linux without nvidia-smi is the CPU build
#   make course PORT=8899 JUPYTER_ARGS=--no-browser

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
WHEELHOUSE ?=
COURSE_PROFILE ?= toy
TEST_PROFILE ?= toy
PORT ?= 8888
JUPYTER_ARGS ?=
PYTEST_ARGS ?=

BIN := $(VENV)/bin
# JupyterLab refuses to run as root unless told (containers often run as root)
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)
STAMP := $(VENV)/.course-installed
COURSE_MD := $(wildcard course/[0-9][0-9]_*.md course/th/[0-9][0-9]_*.md)
NOTEBOOKS := $(patsubst course/%.md,notebooks/%.ipynb,$(COURSE_MD))

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: course test setup check-laptop wheelhouse sync execute learner clean help

help:
	@sed -n '3,9p' Makefile | sed 's/^# \{0,1\}//'

# Create the environment on first use; reinstall when pyproject.toml changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "Python 3.10 or newer is needed: run make PYTHON=python3.11 ..."; exit 1; }
	$(PYTHON) scripts/classroom.py setup --venv $(VENV) --torch-spec "$(TORCH_SPEC)" \
	  $(if $(TORCH_INDEX),--torch-index $(TORCH_INDEX)) $(if $(WHEELHOUSE),--wheelhouse $(WHEELHOUSE))

setup: $(STAMP)

course: $(STAMP)
	COURSE_PROFILE=$(COURSE_PROFILE) $(BIN)/jupyter lab --port=$(PORT) $(ALLOW_ROOT) \
	  --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks/workbook/00_start_here.ipynb $(JUPYTER_ARGS)

test: $(STAMP)
	COURSE_PROFILE=$(TEST_PROFILE) $(BIN)/python -m pytest $(PYTEST_ARGS)

check-laptop: $(STAMP)
	$(BIN)/python scripts/preclass_check.py

wheelhouse: $(STAMP)
	$(BIN)/python scripts/classroom.py wheelhouse --torch-spec "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--torch-index $(TORCH_INDEX))

# course/NN_name.md is the source; its notebook keeps its outputs and cell ids.
sync: $(STAMP)
	@for md in $(COURSE_MD); do \
	  nb=notebooks/$${md#course/}; nb=$${nb%.md}.ipynb; \
	  if [ -f $$nb ]; then $(BIN)/jupytext --update --to ipynb $$md -o $$nb; \
	  else $(BIN)/jupytext --to ipynb $$md -o $$nb; fi || exit 1; \
	done

# Execute on the toy profile, offline, without timing metadata in the cells.
execute: sync
	COURSE_PROFILE=toy HF_HUB_OFFLINE=1 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.record_timing=False $(NOTEBOOKS)
	$(BIN)/python scripts/learner_notebooks.py

learner: $(STAMP)
	$(BIN)/python scripts/learner_notebooks.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
