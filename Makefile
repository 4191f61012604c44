# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint soak bench bytecode clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(MAKE) --no-print-directory bytecode
	touch $(STAMP)

# An installed wheel comes compiled; an editable install does not, and where
# PYTHONDONTWRITEBYTECODE is set nothing ever compiles it: each command then spends about 0.3 s
# compiling hailuo_pipe before doing anything. Rerun after pulling (stale bytecode only costs time).
bytecode:
	$(BIN)/python -m compileall -q hailuo_pipe

# Offline: the preview provider renders animatics locally, so no key and no network are needed.
demo: $(STAMP)
	$(BIN)/hailuo-pipe validate specs/demo.yaml
	$(BIN)/hailuo-pipe render specs/demo.yaml
	$(BIN)/hailuo-pipe report specs/demo.yaml

lint: $(STAMP)
	$(BIN)/ruff check hailuo_pipe hailuo_emulator tests bench
	$(BIN)/mypy

test: lint
	sh scripts/install-chromium.sh
	$(BIN)/python -m pytest -q

# 50 kill -9s at seeded random moments of a 20-scene render, then every provider fault at 20%,
# then TCP faults (resets, half bodies, stalls, late answers, trickles) on half the connections;
# figures for docs/reliability.md (CI runs tests/test_reliability.py: 8 kills, same checks)
soak: $(STAMP)
	$(BIN)/python tests/support/soak.py --kills 50 --scenes 20 --seed 1
	$(BIN)/python tests/support/soak.py --kills 20 --scenes 20 --seed 2 --signals INT,TERM
	$(BIN)/python tests/support/soak.py --kills 20 --scenes 20 --seed 3 --rehearsals --saved-plans
	$(BIN)/python tests/support/soak.py --faults --scenes 20 --seed 1
	$(BIN)/python tests/support/fault_proxy.py --scenes 20 --seed 1 --rate 0.5

bench: $(STAMP) bytecode
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache specs/renders
