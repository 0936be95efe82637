"""Coverage-guided fuzzing (atheris/libFuzzer) of the sans-IO connection driver and
of decide(), for a bounded time. Not part of ``make test``; ``make stress`` runs it.

    .venv/bin/pip install atheris          # if not installed
    .venv/bin/python stress/fuzz_atheris.py -max_total_time=120 [-runs=N] [corpus_dir]

Each input is split by a FuzzedDataProvider into: options (permessage-deflate
offered, deferred failures, max_size), cut points, and the bytes a peer sends (a
handshake prefix is chosen from the input too, so that most inputs reach the frame
parser). Checked on every input, as in tests/core/test_connection_fuzz.py: nothing raises out of the driver
or decide(); one chunk and the cut chunks give the same events, output and state;
the output is whole server frames (pongs, at most one close frame, last); at most
one Closed event; no message over max_size. A failed check or an exception stops the
run with the input saved by libFuzzer (crash-<sha1>); exit status non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["websockets_routes", "h11", "wsproto"]):
    # Imported first inside this block so that the driver is instrumented for coverage.
    import websockets_routes.core.connection  # noqa: F401

from tests.core.test_connection_fuzz import (  # noqa: E402
    ROUTER,
    check_well_formed,
    handshake,
    run,
)
from websockets_routes.core import Request  # noqa: E402

PREFIXES = [b"", handshake(False), handshake(True)]


def drive(chunks: list[bytes], max_size: int, defer: bool) -> dict[str, object]:
    # The same feeding as the hypothesis properties: one runner, two fuzzers.
    return run(chunks, defer_failure=defer, max_size=max_size)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    prefix = PREFIXES[fdp.ConsumeIntInRange(0, len(PREFIXES) - 1)]
    defer = fdp.ConsumeBool()
    max_size = fdp.ConsumeIntInRange(0, 2000)
    cuts = sorted(set(fdp.ConsumeIntListInRange(fdp.ConsumeIntInRange(0, 8), 1, 4096)))
    body = prefix + fdp.ConsumeBytes(fdp.remaining_bytes())
    if not body:
        return
    points = [c for c in cuts if c < len(body)]
    pieces = [body[i:j] for i, j in zip([0, *points], [*points, len(body)], strict=False)]
    whole = drive([body], max_size, defer)
    split = drive(pieces, max_size, defer)
    for key in ("events", "out", "state", "close_sent"):
        if whole[key] != split[key]:
            raise AssertionError(
                f"{key} differs with cuts {points}: {whole[key]!r} != {split[key]!r}"
            )
    check_well_formed(whole, max_size)
    # decide() on whatever request the raw bytes make, header values as bytes too.
    fdp2 = atheris.FuzzedDataProvider(data)
    method = fdp2.ConsumeBytes(fdp2.ConsumeIntInRange(0, 8))
    target = fdp2.ConsumeBytes(fdp2.ConsumeIntInRange(0, 40))
    headers = [
        (
            fdp2.ConsumeBytes(fdp2.ConsumeIntInRange(0, 20)),
            fdp2.ConsumeBytes(fdp2.ConsumeIntInRange(0, 40)),
        )
        for _ in range(fdp2.ConsumeIntInRange(0, 8))
    ]
    ROUTER.decide(Request(method, target, headers))


def main() -> None:
    args = sys.argv
    if not any(arg.startswith(("-max_total_time", "-runs")) for arg in args[1:]):
        args = [*args, "-max_total_time=60"]
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
