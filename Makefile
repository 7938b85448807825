# Read top to bottom: `make book` sets up and runs the book, `make test` runs the tests.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= smoke
FRESH   ?=

.PHONY: install test book train clean

install: $(VENV)/.installed          ## virtual environment with the package, book and test extras

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[book,dev]"
	touch $@

test: install                        ## unit tests and end-to-end checks
	$(PY) -m pytest -q

train: install                       ## train the three models of PROFILE into runs/
	$(PY) -m ddd_support train --profile $(PROFILE)

book: install                        ## execute every chapter with papermill, then build the HTML
	$(PY) -m ddd_support.book --profile $(PROFILE) $(if $(FRESH),--fresh)

clean:
	rm -rf _build runs
