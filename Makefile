# The README's commands. Each main target does all of its own set-up on a fresh machine:
#
#   make book       build the book (every notebook executed) into _build/html
#   make test       run every check under the smoke profile (what .ci/run runs)
#   make lab        start JupyterLab
#   make benchmark  time every notebook and measure its memory (PROFILE=smoke|cpu|gpu)
#   make release OUT=DIR  write the student copy (no solutions, no hidden checks) into DIR
#   make clean      remove build outputs (make distclean also removes .venv)
#
# Variables (set on the command line, e.g. `make book COURSE_PROFILE=smoke`):
#   COURSE_PROFILE  smoke | cpu | gpu; unset: gpu when CUDA is visible, else cpu (make test forces smoke)
#   PYTHON          the interpreter that creates .venv (default python3, 3.10 or newer)
#   TORCH_SPEC      the torch to install when .venv has none (default torch==2.13.0); an existing
#                   torch in .venv (e.g. a CUDA build you installed first) is always kept
#   TORCH_PIP_ARGS  extra pip arguments for torch, e.g. --index-url https://download.pytorch.org/whl/cpu
#   EXTRAS          the pyproject extras installed (default dev,text,speech)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
PY := $(BIN)/python
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
OPEN_CLIP_SPEC ?= open_clip_torch>=2.20
EXTRAS ?= dev,text,speech
PROFILE ?= smoke
BENCH_ARGS ?=
LAB_ARGS ?= $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)
PYTEST_ARGS ?=

# The set-up stamp is keyed on pyproject.toml and the chosen extras: re-runs are quick,
# and editing the dependencies re-installs them.
comma := ,
DEPS_KEY := $(shell cat pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)-$(subst $(comma),_,$(EXTRAS))
STAMP := $(VENV)/.course-installed-$(DEPS_KEY)
LAB_STAMP := $(VENV)/.course-lab-$(DEPS_KEY)

# Kernels started by nbval, nbclient and jupyter-book find the venv's tools first.
export PATH := $(BIN):$(PATH)
# The chapters' models are small: OpenMP threads that spin while waiting slow them by an order
# of magnitude wherever the cores are shared (CI, a busy laptop); passive waiting costs nothing.
export OMP_WAIT_POLICY ?= PASSIVE
# Widgets render as static figures wherever no widget front end runs (book, tests).
BUILD_ENV := env -u MPLBACKEND COURSE_STATIC_FIGURES=1
TEST_ENV := $(BUILD_ENV) COURSE_PROFILE=smoke

BOOK_OUT ?= .
JB_FLAGS := --path-output $(BOOK_OUT) --all -W --keep-going

.PHONY: help book test lab benchmark clean distclean system-deps venv \
        test-quick test-release test-unit test-notebooks test-nbval test-book release

help:
	@echo "make book        build the book into _build/html (COURSE_PROFILE=smoke|cpu|gpu to choose the sizes)"
	@echo "make test        run every check under the smoke profile (unit, hygiene, notebooks, grader, book)"
	@echo "make lab         start JupyterLab"
	@echo "make benchmark   time and measure every notebook (PROFILE=smoke|cpu|gpu)"
	@echo "make release OUT=DIR  write the student copy (no solutions, no hidden checks) into DIR"
	@echo "make clean       remove build outputs; make distclean also removes $(VENV)"

# ---------------------------------------------------------------- set-up

# espeak-ng is the text-to-speech engine of the speech chapter; bubblewrap (bwrap) confines the
# notebooks the autograder runs (no network, only a student view of the files). Install them when
# we can; otherwise say so in one line and carry on (the chapter notes espeak-ng's absence, the
# grader falls back to subprocess+rlimits and says so). Set REQUIRE_ESPEAK=1 to make espeak-ng's
# absence an error.
REQUIRE_ESPEAK ?= 0
system-deps:
	@missing=""; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else SUDO=none; fi; \
	if [ "$$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing (system packages: the speech chapter's text-to-speech engine, the grader's sandbox)"; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; } \
	    || echo "note: could not install$$missing with apt-get; the speech chapter and the grader will say so where they need them"; \
	fi; \
	if ! command -v bwrap >/dev/null 2>&1; then \
	  echo "note: install the system package bubblewrap (apt-get install bubblewrap): the autograder confines submissions with it; without it, it uses subprocess+rlimits and says so"; \
	fi; \
	if ! command -v espeak-ng >/dev/null 2>&1; then \
	  echo "note: install the system package espeak-ng (apt-get install espeak-ng / brew install espeak-ng): the speech chapter's text-to-speech engine; everything else runs without it"; \
	  if [ "$(REQUIRE_ESPEAK)" = 1 ]; then exit 1; fi; \
	fi

# The virtual environment: torch first (so that no other package pulls a CUDA torch),
# then this repository with its extras. A torch already in .venv is kept.
venv: $(STAMP)

$(STAMP):
	@if [ ! -x "$(PY)" ]; then \
	  echo "creating $(VENV) with $$($(PYTHON) --version 2>&1)"; \
	  $(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed; on Debian/Ubuntu install python3-venv (apt-get install python3-venv)"; exit 1; }; \
	fi
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "keeping the torch already in $(VENV): $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
	  $(PY) -m pip install $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"; \
	fi
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	@# test-only reference for chapter 02; --no-deps because its dependencies include torchvision
	$(PY) -m pip install --no-deps "$(OPEN_CLIP_SPEC)"
	@rm -f $(VENV)/.course-installed-*
	@touch $@

$(LAB_STAMP): $(STAMP)
	$(PY) -m pip install -e ".[$(EXTRAS),lab]"
	@rm -f $(VENV)/.course-lab-*
	@touch $@

# ---------------------------------------------------------------- book

book: system-deps $(STAMP)
	@echo "building the book (profile: $${COURSE_PROFILE:-auto}) into $(BOOK_OUT)/_build/html"
	$(BUILD_ENV) $(BIN)/jupyter-book build . $(JB_FLAGS)

# ---------------------------------------------------------------- tests
# Quickest failures first: hygiene and packaging, release sync, unit and grader tests,
# then the notebooks (exercises, nbval) and last the book. pytest's exit code 5
# ("no tests collected") is an error here, never a silent success.

define run_pytest
	@rc=0; $(TEST_ENV) $(PY) -m pytest $(1) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc = 5 ]; then echo "error: pytest collected no tests in: $(1)"; exit 1; fi; exit $$rc
endef

test: system-deps $(STAMP)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory test-quick test-release test-unit test-notebooks test-nbval test-book; \
	echo "make test: all checks passed in $$(( $$(date +%s) - start )) s"

test-quick: $(STAMP)
	$(call run_pytest,tests/test_hygiene.py tests/test_packaging.py)

test-release: $(STAMP)
	@set -e; found=0; for sol in solutions/*.ipynb; do \
	  [ -e "$$sol" ] || continue; found=1; \
	  echo "release check: $$sol"; \
	  $(TEST_ENV) $(PY) -m course_lib.grading.release --check "$$sol" "exercises/$$(basename $$sol)"; \
	done; [ $$found = 1 ] || { echo "error: no notebooks in solutions/"; exit 1; }

test-unit: $(STAMP)
	$(call run_pytest,tests -m "not notebooks" --ignore=tests/test_hygiene.py --ignore=tests/test_packaging.py)

test-notebooks: $(STAMP)
	$(call run_pytest,tests -m notebooks)

test-nbval: $(STAMP)
	$(call run_pytest,--nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider notebooks solutions)

test-book: $(STAMP)
	@$(MAKE) --no-print-directory book BOOK_OUT=_build/smoke COURSE_PROFILE=smoke

# ---------------------------------------------------------------- lab, benchmarks, cleaning

lab: system-deps $(LAB_STAMP)
	$(BIN)/jupyter lab $(LAB_ARGS)

benchmark: system-deps $(STAMP)
	$(PY) benchmarks/run_notebooks.py --profile $(PROFILE) $(BENCH_ARGS)

# The student copy: course-release checks the exercises and refuses a non-empty OUT
# (RELEASE_ARGS=--force replaces its contents).
OUT ?=
RELEASE_ARGS ?=
release: $(STAMP)
	@if [ -z "$(OUT)" ]; then echo "usage: make release OUT=DIR (a new or empty folder outside the repository)"; exit 2; fi
	$(PY) -m course_lib.grading.student_release "$(OUT)" $(RELEASE_ARGS)

clean:
	rm -rf _build .pytest_cache benchmarks/results
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV) *.egg-info
