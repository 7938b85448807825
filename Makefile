# Read top to bottom: `make book` sets up and runs the book, `make test` runs the tests.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= smoke
FRESH   ?=
BOOK_ARGS ?=

.PHONY: install test book book-test browser-test lab train clean

install: $(VENV)/.installed          ## virtual environment with the package, book and test extras

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[book,dev]"
	touch $@

test: install                        ## unit and integration tests (not the book: see book-test)
	$(PY) -m pytest -q

book-test: install                   ## the tests of the book built by `make book`: its pages, figures, browser
	$(PY) -m pytest -q -m book

book: install                        ## execute every chapter with papermill, then build the HTML
	$(PY) -m ddd_support.book --profile $(PROFILE) $(if $(FRESH),--fresh) $(BOOK_ARGS)

browser-test: install                ## open every page of the built book (_build/html) in chromium
	$(PY) -m pytest -q -m book tests/book/test_browser.py

lab: install                         ## JupyterLab, the .md chapters opening as notebooks (jupytext)
	$(VENV)/bin/jupytext-config --settings-file $(VENV)/etc/jupyter/labconfig/default_setting_overrides.json \
		set-default-viewer markdown myst
	$(VENV)/bin/jupyter lab book/

train: install                       ## train the three models of PROFILE into runs/
	$(PY) -m ddd_support train --profile $(PROFILE)

clean:
	rm -rf _build runs
