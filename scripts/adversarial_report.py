"""Run the adversarial suite (tests/adversarial/cases.py) and write its summary table into docs/RELIABILITY.md.

    python scripts/adversarial_report.py              # every case; rewrites the table in docs/RELIABILITY.md
    python scripts/adversarial_report.py --only fifo  # cases whose name contains "fifo"; prints, writes nothing
    python scripts/adversarial_report.py --no-write   # print the table only

Each case runs in its own temporary folder (a tmpfs is mounted for the disk-full case where that is allowed). The
exit status is 1 when a case failed that is not marked as pending, or a pending case passed (then its mark must go).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "adversarial"))
DOC = REPO / "docs" / "RELIABILITY.md"
START = "<!-- adversarial table: start (written by scripts/adversarial_report.py) -->"
END = "<!-- adversarial table: end -->"


def run_all(names: list[str]) -> list[dict]:
    import pytest
    import torch

    import cases  # noqa: F401  (registers the cases)
    from harness import CASES, Context

    torch.set_num_threads(1)
    os.environ.setdefault("MPLBACKEND", "Agg")
    base = Path(tempfile.mkdtemp(prefix="fm-adversarial-"))
    shared = {"base": base / "shared"}
    shared["base"].mkdir()
    rows = []
    try:
        for name in names:
            c = CASES[name]
            tmp = base / name
            tmp.mkdir()
            ctx = Context(tmp, shared)
            start = time.monotonic()
            try:
                c.func(ctx)
                status = "pass"
            except pytest.skip.Exception as exc:
                status = "skipped"
                ctx.outcome = ctx.outcome or f"skipped: {exc}"
            except BaseException as exc:  # noqa: BLE001 - a case that fails in any way is reported, not raised
                if isinstance(exc, KeyboardInterrupt):
                    raise
                status = "FAIL"
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                ctx.outcome = f"{type(exc).__name__}: {first[:200]}" + (f" (ran: {ctx.outcome})" if ctx.outcome else "")
            seconds = time.monotonic() - start
            ctx.outcome = _short(ctx.outcome.replace(str(tmp), "<tmp>").replace(str(shared["base"]), "<shared>"))
            if c.pending:
                status = {"pass": "PASSED BUT MARKED PENDING", "FAIL": "pending"}.get(status, status)
            rows.append({"name": name, "area": c.area, "expected": c.expected, "status": status,
                         "outcome": ctx.outcome, "seconds": seconds, "pending": c.pending})
            print(f"{status:>8}  {seconds:6.1f} s  {name}: {ctx.outcome}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict]) -> str:
    head = ["| area | case | expected | outcome | result |", "|---|---|---|---|---|"]
    body = []
    for r in rows:
        result = r["status"] + (f" ({r['pending']})" if r["pending"] and r["status"] == "pending" else "")
        body.append(f"| {r['area']} | `{r['name']}` | {_cell(r['expected'])} | {_cell(r['outcome'])} | "
                    f"{_cell(result)} |")
    passed = sum(r["status"] == "pass" for r in rows)
    total = sum(r["seconds"] for r in rows)
    foot = (f"\n{passed} of {len(rows)} cases pass; {total:.0f} s in all on {platform.machine()} "
            f"({os.cpu_count()} CPUs, shared with other work when measured), Python {platform.python_version()}.")
    return "\n".join(head + body) + "\n" + foot + "\n"


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"{DOC} has no table markers ({START} ... {END})")
    before, rest = doc.split(START, 1)
    _, after = rest.split(END, 1)
    DOC.write_text(before + START + "\n\n" + text + "\n" + END + after)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="run only the cases whose name contains this text")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/RELIABILITY.md alone")
    args = parser.parse_args(argv)
    import cases  # noqa: F401
    from harness import CASES

    names = [n for n in CASES if args.only is None or args.only in n]
    rows = run_all(names)
    text = table(rows)
    print()
    print(text)
    if args.only is None and not args.no_write:
        write_doc(text)
        print(f"written to {DOC}")
    bad = [r for r in rows if r["status"] in ("FAIL", "PASSED BUT MARKED PENDING")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
