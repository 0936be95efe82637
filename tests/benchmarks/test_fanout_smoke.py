"""The fan-out benchmark's machinery works end to end, in a tiny configuration (numbers
are not checked: the machine is shared; only that every configuration was measured,
every subscriber got every message and no process was left over)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import REDIS_SERVER, require_redis_server

ROOT = Path(__file__).resolve().parents[2]
FANOUT = ROOT / "benchmarks" / "fanout.py"
SUBSCRIBERS, MESSAGES, LATENCY_MESSAGES = 20, 50, 10


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def run_fanout(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FANOUT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("fanout") / "fanout.json"
    done = run_fanout(
        "--quick",
        "--quiet",
        "--subscribers", str(SUBSCRIBERS),
        "--messages", str(MESSAGES),
        "--latency-messages", str(LATENCY_MESSAGES),
        "--slow-messages", "2000",
        "--warmup", "5",
        "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ours-memory / websockets-broadcast" in done.stdout
    return dict(json.loads(out.read_text()))


def check_delivered_everything(entry: dict[str, Any], burst: int) -> None:
    assert entry["complete"] is True
    assert entry["received"] == entry["expected"] == SUBSCRIBERS * (LATENCY_MESSAGES + burst)
    assert entry["incomplete_subscribers"] == entry["out_of_order"] == entry["stray"] == 0
    assert len(entry["deliveries_per_s"]["rounds"]) == 1
    assert entry["deliveries_per_s"]["median"] > 0
    assert 0 < entry["p50_us"]["median"] <= entry["p99_us"]["median"]
    assert entry["server_cpu_us_per_delivery"]["median"] > 0


@pytest.mark.parametrize("config", ["ours-memory", "websockets-broadcast"])
def test_every_subscriber_gets_every_message(report: dict[str, Any], config: str) -> None:
    check_delivered_everything(report["results"][config], MESSAGES)


def test_redis_configuration_delivers_everything_on_loopback(report: dict[str, Any]) -> None:
    """Redis pub/sub is at most once, but on loopback without failures nothing is lost."""
    if "ours-redis-2proc" in report["skipped"]:
        require_redis_server()  # without redis-server: a skip, or under REQUIRE_REDIS=1 a failure
        pytest.fail(f"redis-server is there, yet: {report['skipped']['ours-redis-2proc']}")
    assert os.path.exists(REDIS_SERVER)
    check_delivered_everything(report["results"]["ours-redis-2proc"], MESSAGES)
    ratios = report["ratios"]
    assert ratios["ours-redis-2proc / ours-memory"]["value"] > 0
    assert ratios["ours-redis-2proc / ours-memory"]["target"] == 0.5


def test_the_slow_member_is_closed_with_1013_and_the_others_get_everything(
    report: dict[str, Any],
) -> None:
    check_delivered_everything(report["results"]["slow-member"], 2000)
    slow = report["slow_member"]
    assert slow["got_1013"] is True and slow["others_complete"] is True
    (round_,) = slow["rounds"]
    assert round_["client"]["close_code"] == 1013
    assert round_["overflow_closes"] == 1
    assert round_["rss_before_kib"] > 0 and round_["rss_after_kib"] > 0


def test_ratios_are_from_the_same_run(report: dict[str, Any]) -> None:
    results, ratios = report["results"], report["ratios"]
    ours, theirs = results["ours-memory"], results["websockets-broadcast"]
    ratio = ratios["ours-memory / websockets-broadcast"]
    assert ratio["value"] == pytest.approx(
        ours["deliveries_per_s"]["median"] / theirs["deliveries_per_s"]["median"]
    )
    assert ratio["target"] == 1.5


def test_no_process_outlives_the_run(report: dict[str, Any]) -> None:
    # One server and one client process per configuration, a second server and
    # redis-server for the Redis one.
    expected = 6 + (0 if "ours-redis-2proc" in report["skipped"] else 4)
    assert len(report["pids"]) == expected
    assert not [pid for pid in report["pids"] if alive(pid)]


def test_bad_arguments_give_one_line_and_no_process() -> None:
    done = run_fanout("--configs", "nginx")
    assert done.returncode != 0
    assert "unknown configuration 'nginx'" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_fanout("--subscribers", "0")
    assert done.returncode != 0 and "--subscribers must be positive" in done.stderr
