VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: venv test run bench bench-quick lint stress autobahn clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check websockets_routes tests benchmarks examples autobahn stress
	$(VENV)/bin/mypy websockets_routes

test: venv lint
	$(PY) -m pytest -q

run: venv
	$(PY) -m websockets_routes serve examples.chat.app:router --host 127.0.0.1 --port 8765

bench: venv
	$(PY) benchmarks/match.py
	$(PY) benchmarks/load.py
	$(PY) benchmarks/load.py --uvloop
	$(PY) benchmarks/load.py --servers ours-anyio-trio,websockets-trio-router,trio-websocket \
		--baseline websockets-trio-router

bench-quick: venv
	$(PY) benchmarks/match.py --quick
	$(PY) benchmarks/load.py --quick

# Autobahn|Testsuite fuzzingclient, all 517 cases with permessage-deflate (12-15 min).
# TRANSPORT=asyncio|anyio-asyncio|anyio-trio|websockets-hook, CASES='1.*,5.*', EXCLUDE=...
autobahn: venv
	$(PY) autobahn/run.py

# The long runs: soak, 10k idle connections, Autobahn on every own transport.
stress: venv
	bash stress/run_all.sh

clean:
	rm -rf $(VENV) build *.egg-info
