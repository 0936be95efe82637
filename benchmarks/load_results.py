"""The workloads of ``benchmarks/load.py``, its results (per-round samples, medians,
ratios to the baseline, JSON) and its tables."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # "handshake" | "echo" | "idle-mem"
    concurrency: int = 1
    size: int = 0
    text: bool = False
    unit: str = "/s"
    higher_is_better: bool = True


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("handshake-1", "handshake", 1),
        Workload("handshake-50", "handshake", 50),
        Workload("echo32-1", "echo", 1, 32, True),
        Workload("echo32-50", "echo", 50, 32, True),
        Workload("echo64k-1", "echo", 1, 65536, False),
        Workload("echo64k-50", "echo", 50, 65536, False),
        Workload("idle-mem", "idle-mem", unit=" KiB/conn", higher_is_better=False),
    ]
}

# Ratio targets of issue 4 for ours vs websockets' router (memory: at most 1.0x).
TARGETS = {
    "handshake": 1.5,
    "echo32": 1.3,
    "echo64k": 1.0,
    "idle-mem": 1.0,
}


SHARES = ("server_cpu_share", "server_wait_share", "client_cpu_share", "client_wait_share")


@dataclass
class Results:
    meta: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    # server -> workload -> metric ("value"; "cpu", server µs per op; "faults", server
    # minor page faults per op) -> per-round values
    samples: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)  # the servers'
    client_pids: list[int] = field(default_factory=list)  # the handshake workers'
    # server -> workload -> share (SHARES) -> per-round values
    busy: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)

    def add(self, server: str, workload: str, sample: dict[str, Any]) -> None:
        metrics = self.samples.setdefault(server, {}).setdefault(workload, {})
        metrics.setdefault("value", []).append(sample["value"])
        if sample.get("server_cpu_us_per_op") is not None:
            metrics.setdefault("cpu", []).append(sample["server_cpu_us_per_op"])
        if sample.get("server_minflt_per_op") is not None:
            metrics.setdefault("faults", []).append(sample["server_minflt_per_op"])
        if "client_cpu_share" in sample:
            busy = self.busy.setdefault(server, {}).setdefault(workload, {})
            for share in SHARES:
                busy.setdefault(share, []).append(sample[share])
        if sample.get("errors"):
            per = self.errors.setdefault(server, {})
            per[workload] = per.get(workload, 0) + sample["errors"]

    def median(self, server: str, workload: str, metric: str = "value") -> float | None:
        values = self.samples.get(server, {}).get(workload, {}).get(metric)
        return statistics.median(values) if values else None

    def ratio(
        self, server: str, workload: str, baseline: str, metric: str = "value"
    ) -> float | None:
        """Median over the baseline's median; for "cpu", baseline over server, so that
        for every metric but idle memory a ratio above 1 means better than the baseline."""
        value = self.median(server, workload, metric)
        base = self.median(baseline, workload, metric)
        if not value or not base:
            return None
        return base / value if metric == "cpu" else value / base

    def to_json(self, baseline: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "meta": self.meta,
            "skipped": self.skipped,
            "pids": self.pids,
            "client_pids": self.client_pids,
            "results": {},
        }
        for server, per in self.samples.items():
            out["results"][server] = {
                name: {
                    "unit": WORKLOADS[name].unit.strip(),
                    "rounds": metrics["value"],
                    "median": self.median(server, name),
                    "ratio": self.ratio(server, name, baseline),
                    "server_cpu_us_per_op": {
                        "rounds": metrics.get("cpu", []),
                        "median": self.median(server, name, "cpu"),
                        "ratio": self.ratio(server, name, baseline, "cpu"),
                    },
                    "server_minflt_per_op": {
                        "rounds": metrics.get("faults", []),
                        "median": self.median(server, name, "faults"),
                    },
                    "cpu_busy": self.busy.get(server, {}).get(name, {}),
                    "errors": self.errors.get(server, {}).get(name, 0),
                }
                for name, metrics in per.items()
            }
        return out


def busy(sample: dict[str, Any]) -> str:
    """How busy each side was (a side near 100% is what set the pace), and the server's
    minor page faults per operation (the state its heap was in for this round)."""
    if "client_cpu_share" not in sample:
        return ""
    faults = sample.get("server_minflt_per_op")
    return (
        f"  (cpu busy: server {busy_text(sample, 'server')}, client {busy_text(sample, 'client')}"
        + ("" if faults is None else f"; server {faults:.1f} page faults/op")
        + ")"
    )


def busy_text(shares: dict[str, Any], side: str) -> str:
    """How busy a side was, e.g. 93%; with "+20% waiting" when it waited 2% of the
    window or more for its core while a neighbour had it."""
    text = f"{shares[side + '_cpu_share']:.0%}"
    wait = shares.get(side + "_wait_share", 0.0)
    return text + f" +{wait:.0%} waiting" if wait >= 0.02 else text


def summarize_profiles(directory: str, top: int = 25) -> str:
    """Self and inclusive sample shares per function, from py-spy's collapsed stacks."""
    lines = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".txt") or name == "summary.txt":
            continue
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        with open(os.path.join(directory, name)) as f:
            for line in f:
                stack, _, count_text = line.rstrip("\n").rpartition(" ")
                if not stack or not count_text.isdigit():
                    continue
                count = int(count_text)
                total += count
                frames = [frame for frame in stack.split(";") if frame]
                # Each frame is "function (file:line)": merge lines of one function.
                functions = [frame.rsplit(":", 1)[0] + ")" if ":" in frame else frame
                             for frame in frames]  # fmt: skip
                if functions:
                    own[functions[-1]] = own.get(functions[-1], 0) + count
                for function in set(functions):
                    inclusive[function] = inclusive.get(function, 0) + count
        if not total:
            continue
        lines.append(f"== {name}: {total} samples")
        lines.append("  self%   incl%  function")
        for function, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
            share = 100 * count / total
            lines.append(f"  {share:5.1f}  {100 * inclusive[function] / total:6.1f}  {function}")
        lines.append("")
    return "\n".join(lines)


# Minor page faults per operation at which a round counts as run with the server's heap
# moving: a 64 KiB echo in the slow state takes 9-25, in the fast one under 1.
FAULTY = 1.0

HEADINGS = {"value": "", "cpu": " µs/op", "faults": " flt/op"}


def format_table(results: Results, options: Any, metric: str = "value") -> str:
    """The medians of one metric ("value": throughput, "cpu": server µs per
    operation), or with "both" each server's µs per operation and minor page faults
    per operation in columns beside its throughput."""
    servers = [s for s in options.servers if s in results.samples]
    metrics = ["value", "cpu", "faults"] if metric == "both" else [metric]
    header = ["workload"]
    for server in servers:
        header += [server + (HEADINGS[m] if metric == "both" else "") for m in metrics]
    rows = [header]
    for name in options.workloads:
        workload = WORKLOADS[name]
        if metrics == ["cpu"] and workload.kind == "idle-mem":
            continue
        lower = metrics == ["cpu"] or not workload.higher_is_better
        row = [name + (" (lower=better)" if lower else "")]
        for server in servers:
            for m in metrics:
                value = results.median(server, name, m)
                if value is None:
                    row.append("-")
                    continue
                if m == "faults":
                    row.append(faults_cell(results.samples[server][name]["faults"]))
                    continue
                ratio = results.ratio(server, name, options.baseline, m)
                cell = f"{value:.1f}" if value < 100 else f"{value:.0f}"
                if ratio is not None and server != options.baseline:
                    cell += f" ({ratio:.2f}x)"
                row.append(cell)
        rows.append(row)
    if metric == "cpu":
        title = "Server CPU time per operation, µs (median; ratio = baseline µs / server µs)"
    elif metric == "both":
        title = (
            "Throughput and server CPU time per operation (medians): handshakes/s, echo"
            " round trips/s, idle-mem KiB/connection (lower=better), ratio = server /"
            " baseline; µs/op of server CPU (lower=better), ratio = baseline / server;"
            ' flt/op: the server\'s minor page faults per operation ("2/5 >=1": 2 rounds'
            " of 5 took 1 or more, the others fewer)"
        )
    else:
        title = (
            "Throughput (median; ratio = server / baseline): handshakes/s, echo round trips/s;"
            " idle-mem KiB/connection (ratio = server / baseline)"
        )
    return "\n".join([title, *aligned(rows), ""])


def faults_cell(rounds: list[float]) -> str:
    """The median of the rounds' page faults per operation; when some rounds took
    many and others few, how many of them took many (e.g. "0.0 (2/5 >=1)"): the
    heap's state changed between rounds, and the throughput median mixes both."""
    cell = f"{statistics.median(rounds):.1f}"
    faulty = sum(value >= FAULTY for value in rounds)
    if 0 < faulty < len(rounds):
        cell += f" ({faulty}/{len(rounds)} >={FAULTY:g})"
    return cell


def format_busy(results: Results, options: Any) -> str:
    """Median busy shares, server / client: the side near 100% set the pace. The
    client's share is of its cores (all its handshake workers together)."""
    servers = [s for s in options.servers if s in results.busy]
    rows = [["workload"] + servers]
    for name in options.workloads:
        if not any(name in results.busy[server] for server in servers):
            continue
        row = [name]
        for server in servers:
            rounds = results.busy[server].get(name)
            if not rounds:
                row.append("-")
                continue
            medians = {share: statistics.median(rounds[share]) for share in SHARES}
            row.append(f"{busy_text(medians, 'server')} / {busy_text(medians, 'client')}")
        rows.append(row)
    title = (
        "CPU busy (median; server / client, each of its own cores; +waiting: runnable"
        " while a neighbour had the core)"
    )
    return "\n".join([title, *aligned(rows), ""])


def aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines
