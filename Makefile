# Set-up on a fresh machine needs only python3, pip and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml setup.py $(wildcard src/safeset/native/*.c)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/safeset demo --out demo-out

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Benchmarks compare with DuckDB, python-threatexchange and FAISS: installed only here.
bench: $(VENV)/.bench-installed
	$(BIN)/python bench/metadata_scan.py

clean:
	rm -rf $(VENV) build demo-out src/*.egg-info src/safeset/*.so
