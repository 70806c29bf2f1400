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

.PHONY: install data course test notebooks clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# Fashion-MNIST from Debian where we may install packages; otherwise course_lib.data downloads it or
# falls back to scikit-learn's digits, and says so.
data: install
	@if [ ! -d $(DEBIAN_FASHION_MNIST) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) || \
	  echo "could not install dataset-fashion-mnist; course_lib.data will try the other sources"; \
	fi
	$(BIN)/python -m course_lib.data

# The instructor solution run: regenerate, execute, autograde, summarise (COURSE_PROFILE, COURSE_DEVICE).
course: data
	$(BIN)/python -m course_lib.pipeline $(if $(CHAPTERS),--chapters $(CHAPTERS))

# Regenerate the student notebooks only.
notebooks: install
	mkdir -p build
	for d in solutions/*/; do $(BIN)/nbgrader generate_assignment $$(basename $$d) --force || exit 1; done

test: data
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf build
