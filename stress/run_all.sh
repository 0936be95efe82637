#!/bin/sh
# The long parts of issue 8 (`make stress`): full soak on every server (10,000
# connect/handshake/close cycles, 1,000 concurrent and 10,000 idle connections),
# the driver properties with many more hypothesis examples, atheris over the driver
# (if installed), and the full Autobahn|Testsuite (517 cases, permessage-deflate)
# on the asyncio transport and on the anyio transport under trio (12-40 min each).
#
# Environment: PY (default .venv/bin/python), SOAK_CYCLES (10000), SOAK_CONCURRENT
# (1000), SOAK_IDLE (10000), FUZZ_EXAMPLES (5000), ATHERIS_SECONDS (300),
# AUTOBAHN_TRANSPORTS ("asyncio anyio-trio"; empty: skip Autobahn).
# Runs every step, then exits 1 if any failed.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
status=0
failed=""

step() {
    echo "== $*"
    if ! "$@"; then
        status=1
        failed="$failed
  $*"
    fi
}

step "$PY" stress/soak.py --transport all --cycles "${SOAK_CYCLES:-10000}" \
    --concurrent "${SOAK_CONCURRENT:-1000}" --idle "${SOAK_IDLE:-10000}"
step env FUZZ_EXAMPLES="${FUZZ_EXAMPLES:-5000}" "$PY" -m pytest -q -p no:cacheprovider \
    tests/core/test_connection_fuzz.py
if "$PY" -c "import atheris" 2>/dev/null; then
    corpus="${TMPDIR:-/tmp}/websockets-routes-atheris-corpus"
    mkdir -p "$corpus"
    step "$PY" stress/fuzz_atheris.py -max_total_time="${ATHERIS_SECONDS:-300}" "$corpus"
else
    echo "== atheris not installed (.venv/bin/pip install atheris): fuzzing with it skipped"
fi
for transport in ${AUTOBAHN_TRANSPORTS-asyncio anyio-trio}; do
    step "$PY" autobahn/run.py --transport "$transport"
done

if [ "$status" -ne 0 ]; then
    echo "stress: FAILED:$failed"
else
    echo "stress: all steps passed"
fi
exit "$status"
