# One entry point for everything. `make course` is the instructor solution run; `make test` runs the tests.
# Both set themselves up from nothing: a virtual environment in .venv, the project installed into it,
# and a dataset.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEBIAN_FASHION_MNIST := /usr/share/datasets/fashion-mnist
# nbgrader runs other tools of the environment (alembic) by name.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install system data course test test-browser lab lab-instructor notebooks release clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# Debian packages, where we may install them (root with apt-get): Fashion-MNIST, bubblewrap for the
# sandboxed grader and Chromium for the browser test. Without them course_lib.data downloads the data or
# falls back to scikit-learn's digits, `course grade` refuses to run (its tests fail unless
# COURSE_SKIP_SANDBOX_TESTS=1), and the browser test fails saying how to install Chromium.
APT_INSTALL = apt-get install -y -qq $(1) >/dev/null 2>&1 || \
	(apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $(1) >/dev/null 2>&1)
system:
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  if [ ! -d $(DEBIAN_FASHION_MNIST) ]; then echo "installing Debian's dataset-fashion-mnist"; \
	    $(call APT_INSTALL,dataset-fashion-mnist) || echo "could not install dataset-fashion-mnist; course_lib.data will try the other sources"; fi; \
	  if ! command -v bwrap >/dev/null; then echo "installing bubblewrap (the grader's sandbox)"; \
	    $(call APT_INSTALL,bubblewrap) || echo "could not install bubblewrap: course grade will refuse to run"; fi; \
	  if ! command -v chromium >/dev/null; then echo "installing chromium (the browser test)"; \
	    $(call APT_INSTALL,chromium) || echo "could not install chromium: the browser test will fail"; fi; \
	else \
	  command -v bwrap >/dev/null || echo "bubblewrap is missing and this is not root: install it (apt-get install bubblewrap) for course grade"; \
	  command -v chromium >/dev/null || echo "chromium is missing and this is not root: install it (apt-get install chromium) for the browser test"; \
	fi

data: install system
	$(BIN)/course data

# The instructor solution run: regenerate, execute, autograde, summarise (COURSE_PROFILE, COURSE_DEVICE).
course: data
	$(BIN)/course build $(CHAPTERS)

# JupyterLab, one command each on a fresh machine (LAB_ARGS go to jupyter lab, e.g. LAB_ARGS=--port=8890):
# the instructor's on the course root, with Formgrader; the student's on notebooks/.
lab-instructor: data
	$(BIN)/python -m course_lib.lab instructor $(LAB_ARGS)

lab: data
	$(BIN)/python -m course_lib.lab student $(LAB_ARGS)

# Regenerate the student notebooks only: record the visible tests' expected values from the solutions
# (solutions/<chapter>/recorded.json, a minute or two), then let nbgrader generate (CHAPTERS: some only).
notebooks: install
	mkdir -p build
	$(BIN)/course record $(CHAPTERS)
	for d in $(or $(CHAPTERS),$(notdir $(wildcard solutions/*))); do $(BIN)/nbgrader generate_assignment $$d --force || exit 1; done

# The student release (build/release): notebooks and a course_lib without the answers. RELEASED: the
# chapters whose answers to include (their deadline has passed).
release: install
	$(BIN)/course release $(if $(RELEASED),--released $(RELEASED))

test: data
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser test alone (it is part of `make test` too): JupyterLab in Chromium, about two minutes.
test-browser: data
	$(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

clean:
	rm -rf build
