VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: venv test test-floor run bench bench-quick lint stress autobahn clean

# Two install sets in one .venv, each with its stamp: `make run` needs only the package
# (the example runs on the asyncio transport with the in-memory broadcast, no extras);
# `make test` and the other targets need the dev set, which a .venv made by `make run`
# gets on its first `make test`.
$(VENV)/.installed-run: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

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

# The same code on the LOWEST version of every runtime dependency and extra
# (.ci/floor-constraints.txt); `make test` runs the newest ones in range.
FLOOR := .venv-floor
FLOOR_PY := $(FLOOR)/bin/python
FLOOR_CONSTRAINTS := .ci/floor-constraints.txt
# The tests drive the servers with websockets' own client (proxy=, websockets.trio), new
# in 17.0: a test tool here, while the websockets extra's floor is in the constraints.
# 17.0.1: 17.0's trio client raises "attempt to re-acquire an already held Lock" when
# it receives while it sends (the broadcast tests do).
FLOOR_WS_CLIENT := websockets==17.0.1
# werkzeug and starlette: the routers tests/benchmarks/test_match_smoke.py compares;
# jsonschema: tests/core/test_asyncapi.py validates against the AsyncAPI schema.
FLOOR_TEST_TOOLS := pytest pytest-timeout hypothesis werkzeug starlette jsonschema

$(FLOOR)/.installed: pyproject.toml $(FLOOR_CONSTRAINTS)
	test -x $(FLOOR_PY) || $(PYTHON) -m venv $(FLOOR)
	$(FLOOR_PY) -m pip install -q --upgrade pip
	$(FLOOR_PY) -m pip install -q -c $(FLOOR_CONSTRAINTS) -e '.[websockets,trio,uvloop,redis,metrics]' \
		$(FLOOR_TEST_TOOLS)
	touch $@

test-floor: $(FLOOR)/.installed
	@# 1. The websockets transport on the websockets extra's floor; HEAD requests and
	@#    websockets.trio are new in websockets 17.0.
	$(FLOOR_PY) -m pip install -q -c $(FLOOR_CONSTRAINTS) \
		"$$(grep '^websockets==' $(FLOOR_CONSTRAINTS))"
	$(FLOOR_PY) -m pip check
	$(FLOOR_PY) -m pip freeze --exclude-editable | \
		grep -iE '^(anyio|h11|wsproto|routes|websockets|trio|uvloop|coredis|prometheus-client)=='
	$(FLOOR_PY) -m pytest -q tests/transports/websockets tests/compat \
		--ignore tests/transports/websockets/test_trio.py \
		--deselect tests/transports/websockets/test_transport.py::test_plain_http_routes_through_the_hook
	@# 2. Everything else that exercises the dependencies, websockets' client at 17.0.1.
	$(FLOOR_PY) -m pip install -q '$(FLOOR_WS_CLIENT)'
	$(FLOOR_PY) -m pytest -q tests/core tests/transports tests/testing tests/compat \
		tests/broadcast tests/metrics tests/benchmarks/test_match_smoke.py \
		--ignore tests/transports/asgi --ignore tests/broadcast/test_asgi.py \
		--ignore tests/metrics/test_asgi.py

run: $(VENV)/.installed-run
	$(PY) -m websockets_routes serve examples.chat.app:router --host 127.0.0.1 --port 8765

bench: venv
	$(PY) benchmarks/match.py
	$(PY) benchmarks/load.py
	$(PY) benchmarks/load.py --uvloop
	$(PY) benchmarks/load.py --servers ours-anyio-trio,websockets-trio-router,trio-websocket \
		--baseline websockets-trio-router
	$(PY) benchmarks/fanout.py

bench-quick: venv
	$(PY) benchmarks/match.py --quick
	$(PY) benchmarks/load.py --quick
	$(PY) benchmarks/fanout.py --quick

# Autobahn|Testsuite fuzzingclient, all 517 cases with permessage-deflate (12-15 min).
# TRANSPORT=asyncio|anyio-asyncio|anyio-trio|websockets-hook|custom, CASES='1.*,5.*', EXCLUDE=...
autobahn: venv
	$(PY) autobahn/run.py

# The long runs: soak, 10k idle connections, Autobahn on every own transport.
stress: venv
	bash stress/run_all.sh

clean:
	rm -rf $(VENV) $(FLOOR) build *.egg-info
