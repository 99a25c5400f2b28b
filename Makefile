# Two commands set up a fresh machine and prove it: `make setup` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= $(LIGHTFER_DATA)
DATA_ARG := $(if $(DATA),--data $(DATA),)

.PHONY: setup latex test test-fast reproduce train-from-scratch smoke-run lab

setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[all]"
	$(BIN)/python -m lightfer_utils.kernel install

# pdflatex with booktabs (Debian's packages; as root, or run the apt-get line with sudo): the tests compile
# every paper table's LaTeX with it (CI sets LIGHTFER_REQUIRE_LATEX=1; elsewhere that test skips without it).
latex:
	@command -v pdflatex >/dev/null && kpsewhich booktabs.sty >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends texlive-latex-base texlive-latex-recommended)

# Test files run in parallel, one file per worker (--dist loadfile keeps a file's module fixtures,
# such as the smoke-run replay, in one process).
PYTEST := $(BIN)/python -m pytest -n auto --dist loadfile

# The full suite, as CI runs it: unit, data, network and the smoke-run replay (needs FER2013:
# LIGHTFER_DATA or DATA=...).
test:
	LIGHTFER_DATA=$(DATA) $(PYTEST) tests

# Day-to-day: the unit tier only, no data and no network (under 2 minutes on 2 cores).
test-fast:
	LIGHTFER_DATA= LIGHTFER_OFFLINE=1 $(PYTEST) tests -m unit

# The main job: the paper's Tables 1-4, figures and REPRODUCTION.md from the shipped models and 03's
# shipped variants, measured from their files (nothing fine-tunes; its times: docs/measurements.md),
# published into figures/.
REPRODUCE_RUN := papermill_runs/reproduce-$(shell date +%Y%m%d-%H%M%S)
reproduce:
	$(BIN)/lightfer maintain materialize --all
	$(BIN)/lightfer run --profile reproduce $(DATA_ARG) --out $(REPRODUCE_RUN)
	$(BIN)/lightfer maintain publish $(REPRODUCE_RUN) --force

# Every model of the cpu profile trained from scratch on the full data (about 6 hours on 2 cores).
train-from-scratch:
	$(BIN)/lightfer run --profile cpu $(DATA_ARG)

# Regenerate the committed smoke run that nbval checks (after changing a notebook).
smoke-run:
	rm -rf papermill_runs/smoke
	$(BIN)/lightfer run --profile smoke $(DATA_ARG) --out papermill_runs/smoke

lab:
	$(BIN)/jupyter lab notebooks
