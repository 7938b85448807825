# Read top to bottom: `make book` sets up and runs the book, `make test` runs the tests.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= smoke
FRESH   ?=
BOOK_ARGS ?=
# CPU=1: PyTorch's CPU-only wheels (about 1 GB smaller, no CUDA libraries); TORCH_INDEX names them.
CPU     ?=
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP_INSTALL := $(PY) -m pip install --quiet $(if $(CPU),--extra-index-url $(TORCH_INDEX))
# The book environment's lock file (all extras of the book, every Python of the declared range).
LOCK    := requirements/book.txt

.PHONY: install install-locked test book book-test browser-test lab normalise lint lock train clean

install: $(VENV)/.installed          ## virtual environment with the package, book and test extras

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e ".[book,dev]"
	touch $@

install-locked:                      ## the book environment as locked in requirements/book.txt, CPU-only torch
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --extra-index-url $(TORCH_INDEX) -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .

test: install                        ## unit and integration tests (not the book: see book-test)
	$(PY) -m pytest -q

book-test: install                   ## the tests of the book built by `make book`: its pages, figures, browser
	$(PY) -m pytest -q -m book

book: install                        ## execute every chapter with papermill, then build the HTML
	$(PY) -m ddd_support.book --profile $(PROFILE) $(if $(FRESH),--fresh) $(BOOK_ARGS)

browser-test: install                ## open every page of the built book (_build/html) in chromium
	$(PY) -m pytest -q -m book tests/book/test_browser.py

lab: install                         ## JupyterLab on book/, the .md chapters opening as notebooks (jupytext)
	$(VENV)/bin/jupytext-config --settings-file $(VENV)/etc/jupyter/labconfig/default_setting_overrides.json \
		set-default-viewer markdown myst
	$(VENV)/bin/jupyter lab book/

normalise: install                   ## rewrite every chapter in the form JupyterLab saves it
	$(PY) -m ddd_support.book --normalise

lint: install                        ## the pre-commit hooks on every file: ruff, chapters in normal form
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/pre-commit run --all-files

lock: install                        ## rewrite requirements/book.txt (uv; CUDA-only packages left out)
	$(VENV)/bin/uv pip compile pyproject.toml --extra book --universal --python-version 3.10 \
		--no-header --no-annotate --quiet | grep -vE '^(nvidia-|cuda-|triton==)' > $(LOCK).tmp
	{ echo "# The book environment, locked with \`make lock\` (uv pip compile --universal, Python 3.10+)."; \
	  echo "# torch and torchvision come from PyTorch's CPU index when it is given, so the CUDA-only"; \
	  echo "# packages PyPI's Linux torch needs are left out: see the README, 'Installing'."; \
	  cat $(LOCK).tmp; } > $(LOCK) && rm $(LOCK).tmp

train: install                       ## train the three models of PROFILE into runs/
	$(PY) -m ddd_support train --profile $(PROFILE)

clean:
	rm -rf _build runs
