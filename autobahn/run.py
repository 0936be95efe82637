"""Run the Autobahn|Testsuite fuzzing client against an echo router on one transport.

    python autobahn/run.py [--transport asyncio|anyio-asyncio|anyio-trio|websockets-hook|websockets|custom]
                           [--cases '1.*,2.*'] [--exclude '12.*,13.*'] [--fast]
    python autobahn/run.py --report .autobahn/reports/asyncio     # re-read a finished run

Environment: TRANSPORT, CASES and EXCLUDE stand for the options (``make autobahn``
passes them through). ``--fast`` leaves out 12.* and 13.* (permessage-deflate, which
take 12-15 minutes on two cores); the default is every case, all 517.

The fuzzing client (``autobahntestsuite``) is Python 2.7 only. The first run builds a
2.7 virtualenv in ``.autobahn/py27`` (Python 2.7 from $AUTOBAHN_PYTHON27, pyenv or
PATH; ``virtualenv<20.22``, the last release that still makes 2.7 environments;
dependencies pinned by ``autobahn/constraints-py27.txt``), reused afterwards.

Reports land in ``.autobahn/reports/<transport>/`` (open ``index.html``). The script
prints the count per behaviour and each FAILED / NON-STRICT case with what was
expected and what came back, and exits 1 on any FAILED or NON-STRICT case (or on a
run that tested nothing), 0 otherwise.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import select
import shutil
import signal
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = ROOT / ".autobahn"
VENV = WORK / "py27"
CONSTRAINTS = HERE / "constraints-py27.txt"
TEMPLATE = HERE / "fuzzingclient.json.in"
ECHO_SERVER = HERE / "echo_server.py"
SUITE = "autobahntestsuite==25.10.1"
TRANSPORTS = ["asyncio", "anyio-asyncio", "anyio-trio", "websockets-hook", "websockets", "custom"]
BEHAVIORS = ["OK", "NON-STRICT", "FAILED", "INFORMATIONAL", "UNIMPLEMENTED"]
BAD = ("FAILED", "NON-STRICT")
SLOW_CASES = ["12.*", "13.*"]


def say(text: str) -> None:
    print(f"autobahn: {text}", flush=True)


class Failure(Exception):
    pass


# The Python 2.7 environment.


def find_python27() -> str:
    candidates = [os.environ.get("AUTOBAHN_PYTHON27", "")]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    if shutil.which("pyenv"):
        try:
            pyenv_root = subprocess.run(
                ["pyenv", "root"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "2.7*", "bin", "python")))
    candidates += [shutil.which("python2.7") or "", shutil.which("python2") or ""]
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (2, 7))"],
            capture_output=True,
            text=True,
        )
        if probe.stdout.strip() == "True":
            return candidate
    raise Failure(
        "no Python 2.7 found (autobahntestsuite needs it): install one with "
        "`pyenv install 2.7.18` or point AUTOBAHN_PYTHON27 at its python"
    )


def ensure_wstest() -> Path:
    wstest = VENV / "bin" / "wstest"
    stamp = VENV / ".installed"
    wanted = hashlib.sha256(CONSTRAINTS.read_bytes() + SUITE.encode()).hexdigest()
    if wstest.exists() and stamp.exists() and stamp.read_text() == wanted:
        return wstest
    python27 = find_python27()
    say(f"building the Python 2.7 environment in {VENV} with {python27} (once, ~1-2 min)")
    helper = WORK / "virtualenv-pkg"
    if not (helper / "virtualenv").exists():
        run([sys.executable, "-m", "pip", "install", "-q", "--target", str(helper),
             "virtualenv<20.22"])  # fmt: skip
    if VENV.exists():
        shutil.rmtree(VENV)
    env = dict(os.environ, PYTHONPATH=str(helper))
    run([sys.executable, "-m", "virtualenv", "-q", "-p", python27, str(VENV)], env=env)
    run([str(VENV / "bin" / "pip"), "install", "-q", "-c", str(CONSTRAINTS), SUITE])
    if not wstest.exists():
        raise Failure(f"{SUITE} installed but {wstest} is missing")
    stamp.write_text(wanted)
    return wstest


def run(argv: list[str], **kwargs: Any) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise Failure(f"command failed ({done.returncode}): {' '.join(argv)}\n{tail}")


# The echo server.


class EchoServer:
    def __init__(self, transport: str, log_path: Path) -> None:
        self.transport = transport
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(ECHO_SERVER), "--transport", transport],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=ROOT,
        )
        self.port = self._wait_ready(log_path)

    def _wait_ready(self, log_path: Path, timeout: float = 30.0) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith(b"READY "):
                    return int(line.split()[1])
                break
        self.stop()
        tail = log_path.read_text(errors="replace").strip().splitlines()[-10:]
        raise Failure(f"the {self.transport} echo server did not start:\n" + "\n".join(tail))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self.log.close()


# The run and its report.


def write_spec(outdir: Path, agent: str, url: str, cases: list[str], exclude: list[str]) -> Path:
    spec = string.Template(TEMPLATE.read_text()).substitute(
        outdir=str(outdir / "report"),
        agent=agent,
        url=url,
        cases=json.dumps(cases),
        exclude=json.dumps(exclude),
    )
    json.loads(spec)  # the template must stay valid JSON
    path = outdir / "fuzzingclient.json"
    path.write_text(spec)
    return path


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def load_index(outdir: Path) -> dict[str, dict[str, Any]]:
    index_path = outdir / "report" / "index.json"
    if not index_path.exists():
        raise Failure(f"no {index_path}: the fuzzing client ran no case")
    index = json.loads(index_path.read_text())
    if not index:
        raise Failure(f"{index_path} is empty: the fuzzing client ran no case")
    if len(index) > 1:
        say(f"note: several agents in {index_path}, reading {sorted(index)[0]}")
    return index[sorted(index)[0]]


def short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def describe_case(outdir: Path, case_id: str, entry: dict[str, Any]) -> list[str]:
    """What the case expected and what it got, from its own JSON report."""
    lines = [f"{case_id}: behavior {entry.get('behavior')}, close {entry.get('behaviorClose')}"]
    report_file = entry.get("reportfile")
    if not report_file:
        return lines
    try:
        report = json.loads((outdir / "report" / report_file).read_text())
    except (OSError, ValueError) as exc:
        return lines + [f"    (report {report_file} unreadable: {exc})"]
    lines.append(f"    case: {short(report.get('description', ''), 200)}")
    lines.append(f"    expectation: {short(report.get('expectation', ''), 300)}")
    lines.append(f"    result: {short(report.get('result', ''), 300)}")
    if report.get("resultClose"):
        lines.append(f"    close result: {short(report['resultClose'], 300)}")
    lines.append(f"    expected: {short(report.get('expected', {}))}")
    lines.append(f"    received: {short(report.get('received', []))}")
    lines.append(
        f"    close: expected {short(report.get('expectedClose', {}))}; server sent code "
        f"{report.get('remoteCloseCode')} reason {report.get('remoteCloseReason')!r}; "
        f"client code {report.get('localCloseCode')}, closed by client "
        f"{report.get('closedByMe')}, clean {report.get('wasClean')}"
    )
    lines.append(f"    report: {outdir / 'report' / report_file}")
    return lines


def summarize(outdir: Path) -> int:
    cases = load_index(outdir)
    counts = dict.fromkeys(BEHAVIORS, 0)
    by_behavior: dict[str, list[str]] = {}
    close_bad: list[str] = []
    for case_id in sorted(cases, key=case_key):
        entry = cases[case_id]
        behavior = entry.get("behavior", "?")
        counts[behavior] = counts.get(behavior, 0) + 1
        by_behavior.setdefault(behavior, []).append(case_id)
        if entry.get("behaviorClose") in BAD and behavior not in BAD:
            close_bad.append(case_id)
    total = sum(counts.values())
    say(f"{total} cases: " + ", ".join(f"{n} {b}" for b, n in counts.items()))
    for behavior in ("INFORMATIONAL", "UNIMPLEMENTED", *BAD):
        ids = by_behavior.get(behavior, [])
        if ids:
            say(f"{behavior}: {' '.join(ids)}")
    if close_bad:
        say(f"close behaviour FAILED/NON-STRICT (case itself passed): {' '.join(close_bad)}")
    bad = [c for b in BAD for c in by_behavior.get(b, [])]
    for case_id in sorted(bad, key=case_key):
        print("\n".join(describe_case(outdir, case_id, cases[case_id])))
    say(f"report: {outdir / 'report' / 'index.html'}")
    return 1 if bad else 0


def split_list(text: str) -> list[str]:
    return [item.strip() for item in text.replace(" ", ",").split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--transport", default=os.environ.get("TRANSPORT") or "asyncio")
    parser.add_argument("--cases", default=os.environ.get("CASES") or "*")
    parser.add_argument("--exclude", default=os.environ.get("EXCLUDE") or "")
    parser.add_argument("--fast", action="store_true", help="leave out 12.* and 13.*")
    parser.add_argument("--outdir", help="default .autobahn/reports/<transport>")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for wstest")
    parser.add_argument("--report", metavar="OUTDIR", help="only summarize a finished run")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # so that wstest and the echo server are stopped too

    signal.signal(signal.SIGTERM, on_term)
    try:
        if args.report:
            return summarize(Path(args.report))
        if args.transport not in TRANSPORTS:
            parser.error(f"unknown transport {args.transport!r}; one of {', '.join(TRANSPORTS)}")
        cases = split_list(args.cases)
        exclude = split_list(args.exclude) + (SLOW_CASES if args.fast else [])
        outdir = Path(args.outdir or WORK / "reports" / args.transport).resolve()
        wstest = ensure_wstest()
        if (outdir / "report").exists():
            shutil.rmtree(outdir / "report")
        outdir.mkdir(parents=True, exist_ok=True)
        server = EchoServer(args.transport, outdir / "server.log")
        try:
            url = f"ws://127.0.0.1:{server.port}/"
            spec = write_spec(outdir, f"websockets-routes-{args.transport}", url, cases, exclude)
            say(
                f"{args.transport} echo server on {url}; cases {cases}, excluded {exclude}; "
                f"wstest log in {outdir / 'wstest.log'}"
            )
            started = time.monotonic()
            with open(outdir / "wstest.log", "wb") as log:
                try:
                    subprocess.run(
                        [str(wstest), "-m", "fuzzingclient", "-s", str(spec)],
                        cwd=outdir,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        timeout=args.timeout,
                    )
                except subprocess.TimeoutExpired as exc:
                    raise Failure(f"wstest still running after {args.timeout:.0f} s") from exc
            say(f"wstest done in {time.monotonic() - started:.0f} s")
            if server.proc.poll() is not None:
                say(f"the echo server exited during the run (code {server.proc.returncode})")
        finally:
            server.stop()
        return summarize(outdir)
    except Failure as exc:
        say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
