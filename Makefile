# Every target works on a fresh machine: `make install` first, then any other.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export AUTOML_MIRROR ?= $(abspath ../shared/kaggle/competitions)

.PHONY: install test lint bench quality demo clean

install: $(BIN)/automl

# torch first, pinned: a looser requirement with no torch installed pulls a CUDA build of several GB.
$(BIN)/automl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check automl tests benchmarks

bench: install
	$(BIN)/python benchmarks/run_all.py

# every bundle with a quarter of train.csv held back, a full run each, scored as Kaggle would: about 35 minutes
quality: install
	$(BIN)/python benchmarks/quality.py

demo: install
	$(BIN)/automl demo

clean:
	rm -rf $(VENV) runs data .pytest_cache
