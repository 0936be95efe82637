"""Per-message cost of the connection driver, in one process, no sockets.

    .venv/bin/python benchmarks/driver.py [--quick]

One round = receive one masked client frame (bytes in), get the message, produce the
echo frame (bytes out), as the issue's "Known cost to beat" measures it. Compared:

- wsproto 1.3.2 ``Connection`` as is (pure-Python ``XorMaskerSimple``);
- wsproto's ``FrameDecoder``/``MessageDecoder`` with our ``Masker`` (the driver's
  general path), with the C speedup and with the pure-Python int-XOR fallback;
- our driver (fast path), with the C speedup and with the pure-Python fallback;
- websockets 17.4 sans-IO ``Protocol`` (C unmasking) for reference.

Timings are the best of 5 repeats (``--quick``: one repeat of a twentieth of the
rounds, to check that the script runs).
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.frames import Opcode as WsOpcode  # noqa: E402
from websockets.protocol import OPEN, SERVER, Protocol  # noqa: E402
from wsproto import Connection, ConnectionType  # noqa: E402
from wsproto.events import BytesMessage, TextMessage  # noqa: E402

import websockets_routes.core.connection as driver  # noqa: E402
import websockets_routes.core.frames as frames  # noqa: E402
from tests.transports.helpers import frame, handshake  # noqa: E402
from websockets_routes.core import Router  # noqa: E402
from websockets_routes.core.masking import apply_mask, py_apply_mask  # noqa: E402

router = Router()


@router.route("/echo")
async def echo(ws, path):  # pragma: no cover
    pass


def opened(cls: type[driver.ServerConnection] = driver.ServerConnection) -> driver.ServerConnection:
    conn = cls(compression=None)
    (event,) = conn.receive_data(handshake())
    conn.carry_out(router.decide(event.request))
    conn.data_to_send()
    return conn


class GeneralOnly(frames.FrameReader):
    """Every frame through wsproto's decoders (with our Masker)."""

    __slots__ = ()

    def receive(self, data: bytes, events: list) -> object:
        return self.receive_general(data, events)


class SlowOnly(driver.ServerConnection):
    """Every frame through wsproto's decoders (with our Masker)."""

    __slots__ = ()
    _frame_reader = GeneralOnly


def per_round(fn, n: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=n, repeat=repeat)) / n * 1e6


def rounds(data: bytes, text: bool, scale: int = 1, repeat: int = 5) -> dict[str, float]:
    n = (20000 if len(data) < 1000 else 1000) // scale
    results = {}

    conn = Connection(ConnectionType.SERVER)

    def wsproto_round() -> None:
        conn.receive_data(data)
        for event in conn.events():
            cls = TextMessage if text else BytesMessage
            conn.send(cls(data=event.data))

    results["wsproto Connection (its masker)"] = per_round(wsproto_round, n, repeat)

    for label, mask in (("C", apply_mask), ("pure Python", py_apply_mask)):
        frames.apply_mask = mask  # what the fast path calls
        import websockets_routes.core.masking as masking

        saved = masking.apply_mask
        masking.apply_mask = mask
        try:
            slow = opened(SlowOnly)
            fast = opened()

            def slow_round(conn: driver.ServerConnection = slow) -> None:
                for event in conn.receive_data(data):
                    conn.send(event.data)

            def fast_round(conn: driver.ServerConnection = fast) -> None:
                for event in conn.receive_data(data):
                    conn.send(event.data)

            results[f"wsproto decoders + our Masker ({label})"] = per_round(slow_round, n, repeat)
            results[f"our driver, fast path ({label})"] = per_round(fast_round, n, repeat)
        finally:
            masking.apply_mask = saved
            frames.apply_mask = saved

    proto = Protocol(SERVER, state=OPEN, max_size=2**20)

    def websockets_round() -> None:
        proto.receive_data(data)
        for event in proto.events_received():
            if event.opcode is WsOpcode.TEXT:
                proto.send_text(event.data)
            else:
                proto.send_binary(event.data)
        proto.data_to_send()

    results["websockets 17.4 Protocol (C)"] = per_round(websockets_round, n, repeat)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="one repeat of 1/20 of the rounds: a smoke run"
    )
    args = parser.parse_args(argv)
    scale, repeat = (20, 1) if args.quick else (1, 5)
    cases = [
        ("32 B text", frame(0x1, b"x" * 32), True),
        ("64 KiB binary", frame(0x2, os.urandom(65536)), False),
    ]
    for name, data, text in cases:
        print(f"\n{name}: µs per receive-and-echo round (best of {repeat})")
        for label, value in rounds(data, text, scale, repeat).items():
            print(f"  {label:48s} {value:8.2f}")


if __name__ == "__main__":
    main()
