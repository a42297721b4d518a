# One command for everything CI checks: `make check`.
PY := .venv/bin/python

.PHONY: check fmt-check lint types test bench

check: fmt-check lint types test

fmt-check:
	$(PY) -m ruff format --check policy_engine proxy tests bench scripts

lint:
	$(PY) -m ruff check policy_engine proxy tests bench scripts

types:
	$(PY) -m mypy

test:
	$(PY) -m pytest

bench:
	$(PY) -m bench.run
