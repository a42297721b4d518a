# One command for everything CI checks: `make check`.
PY := .venv/bin/python

.PHONY: check fmt-check lint types test bench differential opa-bindings

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

# OPA as an oracle: the differential fuzzer (../shared/tools/differential.py, beside the
# repository) runs random policies through this engine and OPA's own Go engine and prints
# each kind of disagreement once. Not part of `make check`: OPA's bindings are optional.
# Known, accepted differences are listed in docs/opa-differences.md.
FUZZER := ../shared/tools/differential.py
DIFF_SEEDS ?= 1 2 3 4 5
DIFF_SECONDS ?= 120
OPA_WHEEL_DIR ?= /tmp/opa-wheel

opa-bindings:
	@$(PY) -c "import opa_bindings" 2>/dev/null || { \
	  $(PY) -m pip download --no-deps -d $(OPA_WHEEL_DIR) --python-version 3.14 \
	    --only-binary=:all: opa-golib-python-bindings && \
	  $(PY) -m pip install --no-deps --ignore-requires-python $(OPA_WHEEL_DIR)/opa_golib*.whl; }

differential: opa-bindings
	@test -f $(FUZZER) || { echo "differential: $(FUZZER) is not beside this clone"; exit 2; }
	@status=0; for seed in $(DIFF_SEEDS); do \
	  $(PY) $(FUZZER) --seed $$seed --seconds $(DIFF_SECONDS) || status=1; \
	done; exit $$status
