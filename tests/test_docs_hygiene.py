"""The README and docs/ read as maintained documents, not as a work log.

- No work-log words (numbered sessions, "this session", "helper", "owner", "was fixed
  on"): who did what and when belongs to git log.
- No absolute paths of a development machine (/work/..., /tmp/..., /root/...,
  /home/...): every command in the docs runs from a fresh clone.
- The README's "Correctness and speed" section quotes docs/performance.md: every ratio
  in it (``1.45x``, ``0.49x``) is there too, and it links the three documents.
- Relative links point at files that exist, and every ``tests/...py::test_name`` the
  docs name (docs/reliability.md points each rule at one) is a test that exists.

Each failure lists file:line for every offending line.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SECTION = "## Correctness and speed"
LINKED_FROM_SECTION = ["docs/performance.md", "docs/conformance.md", "docs/reliability.md"]

WORK_LOG = re.compile(
    r"""
      \bsessions?[ -]?\d+\b                                  # session 2, session-3
    | \b(?:this|last|next|previous|that)\ session\b
    | (?<![\w./-])helpers?\b(?!\.py)                         # not tests/.../helpers.py
    | \bowners?\b
    | \bwas\ fixed\ on\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|root|home)/")
RATIO = re.compile(r"(?<![\w.,])\d[\d,]*(?:\.\d+)?x\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")
TEST_REFERENCE = re.compile(r"\b(tests/[\w/]+\.py)::(\w+)")


def documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def lines(path: Path) -> list[tuple[str, str]]:
    """``(file:line, text)`` for each line of ``path``."""
    name = path.relative_to(ROOT).as_posix()
    text = path.read_text(encoding="utf-8")
    return [(f"{name}:{n}", line) for n, line in enumerate(text.splitlines(), 1)]


def matching(pattern: re.Pattern[str]) -> list[str]:
    return [
        f"{where}: {line.strip()}"
        for path in documents()
        for where, line in lines(path)
        if pattern.search(line)
    ]


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION + "\n")
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else len(text)]


def test_no_work_log_words() -> None:
    found = matching(WORK_LOG)
    assert not found, "work-log words (history goes to git log):\n" + "\n".join(found)


def test_no_absolute_paths() -> None:
    found = matching(ABSOLUTE_PATH)
    assert not found, "absolute paths of a machine:\n" + "\n".join(found)


def test_readme_ratios_are_those_of_docs_performance() -> None:
    quoted = RATIO.findall(readme_section())
    assert quoted, f"no ratio found in the README's {SECTION!r} section"
    performance_md = ROOT / "docs" / "performance.md"
    assert performance_md.exists(), "docs/performance.md is missing"
    performance = set(RATIO.findall(performance_md.read_text("utf-8")))
    missing = sorted(set(quoted) - performance)
    assert not missing, f"in README.md {SECTION!r}, not in docs/performance.md: {missing}"


def test_readme_section_links_the_three_documents() -> None:
    targets = set(LINK.findall(readme_section()))
    missing = [doc for doc in LINKED_FROM_SECTION if doc not in targets]
    assert not missing, f"README.md {SECTION!r} does not link {missing}"


def test_relative_links_point_at_files_that_exist() -> None:
    broken = []
    for path in documents():
        for where, line in lines(path):
            for target in LINK.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                    continue  # a URL, or an anchor in the same file
                if not (path.parent / target.split("#")[0]).exists():
                    broken.append(f"{where}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)


def test_tests_named_in_the_docs_exist() -> None:
    missing = []
    for path in documents():
        for where, line in lines(path):
            for file, name in TEST_REFERENCE.findall(line):
                test_file = ROOT / file
                source = test_file.read_text("utf-8") if test_file.exists() else ""
                if not re.search(rf"^(?:async )?def {name}\(", source, re.MULTILINE):
                    missing.append(f"{where}: {file}::{name}")
    assert not missing, "tests named in the docs that do not exist:\n" + "\n".join(missing)
