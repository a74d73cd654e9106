# The two set-up commands of the README: `make demo` and `make test`. Everything they need is
# installed here into .venv (pip's cache keeps the large wheels such as torch between runs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MATURIN := $(VENV)/bin/maturin
EXTRAS ?= test,bench,demo

.PHONY: demo test build test-rust test-python lint bench bench-rust wheel sdist check-dist clean help

help:
	@echo "make demo   - create .venv, build in release mode, run the main job on an embedded default"
	@echo "make test   - build, then run cargo test and pytest"
	@echo "make bench  - pytest-benchmark runs next to FAISS, torch, numpy, sentence-transformers, usearch (saved, compared)"
	@echo "make wheel  - the portable release wheel (manylinux2014, x86_64, CPython >= 3.10) in dist/"
	@echo "make check-dist - wheel + sdist installed into fresh venvs (numpy only) and smoke-tested"

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

# Warnings are errors: the build stays warning-free.
lint:
	cargo clippy --workspace -- -D warnings

test-python: build
	$(PY) -m pytest tests
	$(PY) -m pytest benches --benchmark-disable -q  # every benchmark once, small sizes: a smoke test

test: build lint test-rust test-python

# pytest-benchmark: hardneg next to FAISS, torch, numpy, sentence-transformers, usearch in one run;
# the JSON is saved under .benchmarks/ and compared with the previous saved run.
# `make bench BENCH_OPTS=` runs the small sizes.
BENCH_OPTS ?= --full
bench: build
	$(PY) -m pytest benches --benchmark-only --benchmark-autosave --benchmark-compare \
		--benchmark-columns=min,median,stddev,rounds --benchmark-sort=name $(BENCH_OPTS)

bench-rust:
	cargo bench -p hardneg-core

# The release wheel: linked by zig against glibc 2.17 (manylinux2014), so it installs on older
# distributions than this machine's; built in its own target dir so `make build` stays incremental.
wheel: $(PY)
	$(PY) -m pip install -q "ziglang>=0.13" "auditwheel>=6"
	rm -f dist/hardneg-*.whl
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(MATURIN) build --release --zig --compatibility manylinux2014 \
		--target-dir target/wheel --out dist
	$(VENV)/bin/auditwheel show dist/hardneg-*.whl

sdist: $(PY)
	rm -f dist/hardneg-*.tar.gz
	$(MATURIN) sdist --out dist

check-dist: wheel sdist
	.ci/check_dist

clean:
	rm -rf $(VENV) target dist
