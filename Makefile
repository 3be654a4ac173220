# The README's two commands are `make book` and `make test` (.ci/run calls `make test`).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= ci
STAMP := $(VENV)/.installed-stamp

# On 2 busy cores one torch thread ran small training loops 3-10x faster than two: one thread
# per process, and JOBS processes at once (chapters, test workers, results; one per core of
# the development machine). Override both on a big machine: `make test JOBS=8`.
JOBS ?= 2
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
# never let a loader try the network during the build or the tests on this machine
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

BOOK_SOURCES := _config.yml _toc.yml references.bib $(wildcard book/*) \
	$(wildcard cldyn_lib/*.py) $(wildcard data/results/*) tools/build_book.py
HTML := _build/html/index.html

.PHONY: help setup book test unit nbval browser lint clean results

help:
	@echo "make book   set up $(VENV), execute every chapter at SCALE=$(SCALE), render _build/html"
	@echo "make test   everything: lint, unit tests, nbval, browser checks (builds the book first)"
	@echo "make results  regenerate the committed CPU results (hours; resumable)"

# An isolated environment. constraints/cpu.txt pins this machine's CPU torch; the package
# metadata only asks for torch>=2.2, so `pip install` in Colab keeps Colab's CUDA build.
setup: $(STAMP)
$(STAMP): pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints/cpu.txt -e ".[book,test]"
	touch $@

book: $(HTML)
$(HTML): $(STAMP) $(BOOK_SOURCES)
	$(PY) tools/build_book.py --scale $(SCALE) --jobs $(JOBS)

lint: $(STAMP)
	$(PY) -m ruff check cldyn_lib tests tools benchmarks book
	$(PY) -m ruff format --check cldyn_lib tests tools benchmarks

unit: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) -m "not book" tests

# nbval re-executes the executed chapters and compares the outputs marked NBVAL_CHECK_OUTPUT;
# -n: pytest-xdist workers, --dist loadfile keeps each notebook's cells on one kernel
NBVAL := $(PY) -m pytest -q -n $(JOBS) --dist loadfile -p no:cacheprovider --nbval-lax \
	--nbval-current-env _build/src/book
nbval: $(HTML)
	$(NBVAL)

browser: $(HTML)
	$(PY) -m pytest -q -n $(JOBS) -m book tests

test: $(HTML) lint
	$(PY) -m pytest -q -n $(JOBS) tests
	$(NBVAL)

# RESULTS_JOBS results at once (default JOBS)
RESULTS_JOBS ?= $(JOBS)
# regenerate every committed CPU result that this library code has not made yet (resumable;
# refuses a tree with modified tracked files; see tools/make_results.py --list)
results: $(STAMP)
	$(PY) tools/make_results.py --jobs $(RESULTS_JOBS)

clean:
	rm -rf _build
