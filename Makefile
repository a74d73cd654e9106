# The two set-up commands of the README: `make demo` and `make test`. Everything they need is
# installed here into .venv (pip's cache keeps the large wheels such as torch between runs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MATURIN := $(VENV)/bin/maturin
EXTRAS ?= test,bench,demo

.PHONY: demo test build test-rust test-python bench bench-rust clean help

help:
	@echo "make demo   - create .venv, build in release mode, run the main job on an embedded default"
	@echo "make test   - build, then run cargo test and pytest"
	@echo "make bench  - side-by-side benchmarks against FAISS, torch, numpy, usearch"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip "maturin>=1.9.4,<2"

# Rebuilds the extension (incremental) and installs the package with its extras into .venv.
build: $(PY)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(MATURIN) develop --release --extras $(EXTRAS)

demo: build
	$(VENV)/bin/hardneg demo

test-rust:
	cargo test --release --workspace --exclude hardneg-py

test-python: build
	$(PY) -m pytest tests

test: build test-rust test-python

bench: build
	$(PY) benches/bench_topk.py

bench-rust:
	cargo bench -p hardneg-core

clean:
	rm -rf $(VENV) target
