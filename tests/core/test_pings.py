"""core.pings.Pings alone: pings waiting for their pong, and the keepalive schedule."""

from __future__ import annotations

import pytest

from websockets_routes.core.pings import Pings


def test_payloads_are_unique_4_bytes_unless_given():
    pings = Pings(None, None)
    chosen = set()
    for i in range(100):
        payload = pings.payload(None)
        assert len(payload) == 4 and payload not in chosen
        chosen.add(payload)
        pings.sent(payload, f"w{i}", float(i))
    assert pings.payload(b"mine") == b"mine"
    pings.sent(b"mine", "m", 0.0)
    with pytest.raises(RuntimeError, match="same data"):
        pings.payload(b"mine")


def test_a_pong_answers_its_ping_and_every_earlier_one_oldest_first():
    pings = Pings(None, None)
    for payload, waiter, sent in ((b"1", "a", 1.0), (b"2", "b", 2.0), (b"3", "c", 3.0)):
        pings.sent(payload, waiter, sent)
    assert pings.pong(b"2") == [("a", 1.0), ("b", 2.0)]
    assert pings.pong(b"2") == []  # answered already
    assert pings.pong(b"other") == []  # unsolicited
    assert pings.take_waiters() == ("c",)
    assert pings.take_waiters() == ()


def test_keepalive_schedule_and_timeout():
    pings = Pings(10, 5)
    assert pings.deadline() is None and pings.due(1e9) is None  # not started
    pings.start(100.0)
    assert pings.deadline() == 110.0
    assert pings.due(109.9) is None
    assert pings.due(110.0) == "ping"
    pings.keepalive_sent(pings.payload(None), 110.0)
    assert pings.deadline() == 115.0  # the pong is due
    assert pings.due(114.9) is None
    assert pings.due(115.0) == "timeout"


def test_any_pong_moves_the_deadline_to_the_next_ping():
    pings = Pings(10, 5)
    pings.start(0.0)
    payload = pings.payload(None)
    pings.keepalive_sent(payload, 10.0)
    assert pings.pong(payload) == []  # the keepalive has no waiter to complete
    assert pings.deadline() == 20.0 and pings.due(15.0) is None
    # A heartbeat (unsolicited pong) proves the peer alive too.
    pings.keepalive_sent(pings.payload(None), 20.0)
    assert pings.pong(b"heartbeat") == []
    assert pings.deadline() == 30.0 and pings.due(25.0) is None


def test_a_keepalive_ping_made_moot_by_a_heartbeat_is_forgotten():
    pings = Pings(10, 5)
    pings.start(0.0)
    pings.keepalive_sent(pings.payload(None), 10.0)
    pings.pong(b"heartbeat")
    assert pings.due(20.0) == "ping"
    pings.keepalive_sent(pings.payload(None), 20.0)
    assert len(pings.waiting) == 1  # only the latest keepalive ping waits


def test_keepalive_waiters_are_never_reported():
    pings = Pings(10, 5)
    pings.start(0.0)
    pings.sent(b"user", "waiter", 1.0)
    pings.keepalive_sent(pings.payload(None), 10.0)
    assert pings.take_waiters() == ("waiter",)


def test_without_timeout_pings_go_on():
    pings = Pings(1, None)
    pings.start(0.0)
    for now in (1.0, 2.0, 3.0):
        assert pings.due(now) == "ping"
        pings.keepalive_sent(pings.payload(None), now)
        assert pings.deadline() == now + 1


def test_stop_ends_the_schedule():
    pings = Pings(10, 5)
    pings.start(0.0)
    pings.keepalive_sent(pings.payload(None), 10.0)
    pings.stop()
    assert pings.deadline() is None and pings.due(1e9) is None
