# Everything a fresh machine needs goes through these targets; nothing is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NBA    := $(VENV)/bin/nba

.PHONY: install demo serve test test-fast proto bench clean

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

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m 'not slow'

# Regenerate the gRPC stubs after editing proto/ (a test fails when they are stale).
proto: install
	$(PY) -m harness.protogen

bench: install
	$(PY) bench/latency.py
	$(PY) bench/state_latency.py
	$(PY) bench/simulator.py
	$(PY) bench/loadtest.py
	$(PY) bench/loadtest.py --cluster
	$(PY) bench/loadtest.py --outage

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
