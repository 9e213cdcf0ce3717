# Everything a fresh machine needs goes through these targets; nothing is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NBA    := $(VENV)/bin/nba

.PHONY: install demo serve test test-fast lint-imports proto proto-check bench results clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: install
	$(NBA) demo

serve: install
	$(NBA) serve

# The full suite (CI): import contracts, then every test; the slowest listed at the end.
test: install lint-imports proto-check
	$(PY) -m pytest -q --durations=15

# Every test but those marked slow (load, soak, long simulations): under two minutes on 2 cores.
test-fast: install lint-imports proto-check
	$(PY) -m pytest -q -m 'not slow' --durations=10

# Dependencies point one way: engine <- training <- simulators <- nba.cli (pyproject.toml).
lint-imports: install
	$(VENV)/bin/lint-imports --no-cache

# Regenerate the gRPC stubs after editing proto/ (a test fails when they are stale).
proto: install
	$(PY) -m harness.protogen

# The gRPC contract: buf lint (STANDARD + COMMENTS) and no breaking change against the frozen v1
# (proto/nba-v1.image.json). Installs buf from npm into .tools/ on first use.
proto-check: install
	$(PY) -m harness.buf

bench: install
	$(PY) bench/latency.py
	$(PY) bench/state_latency.py
	$(PY) bench/simulator.py
	$(PY) bench/loadtest.py
	$(PY) bench/loadtest.py --cluster
	$(PY) bench/loadtest.py --outage
	$(PY) bench/serving.py
	$(PY) bench/sweep_scaling.py

# Regenerate docs/results.md (and the README's results table): about two hours on 2 cores.
results: install
	$(PY) bench/results.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .tools .proto-deps
