"""Are two scans' reports the same, timings aside? For refactors that must not change behaviour.

    # reports of the demo data, the comparison sets and COVID-CT, with the working tree's code
    PYTHONPATH=$PWD/src python benchmarks/compare_reports.py capture /tmp/ref \
        --sets /tmp/dsaudit_compare          # made by: python benchmarks/compare_tools.py --tools none
    # ... change the code, capture again into /tmp/new, then
    python benchmarks/compare_reports.py diff /tmp/ref /tmp/new

`diff A B` takes two report.json files, or two folders whose */report.json are paired by folder
name; it prints every differing JSON path and exits 1 when anything differs. Keys that measure time
(`timings`, `duration_seconds`, `started`) and the command line (`command`) are left out.
`capture` scans with --no-cache --no-probe; the demo data is built once into --demo-data (default
$TMPDIR/dsaudit-demo-data) and reused, so that both captures see the same bytes and paths.
Datasets that are missing (no ../shared, no --sets) are skipped with a note. To capture the
reference from an older commit: `git archive COMMIT src | tar -x -C /tmp/old` and run capture
with PYTHONPATH=/tmp/old/src.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
COVID_CT = REPO.parent / "shared" / "datasets" / "covid-ct"
IGNORED = frozenset({"timings", "duration_seconds", "started", "command"})


def strip(value: Any, ignored: frozenset[str] = IGNORED) -> Any:
    """The report without the keys that measure time or name the command."""
    if isinstance(value, dict):
        return {k: strip(v, ignored) for k, v in value.items() if k not in ignored}
    if isinstance(value, list):
        return [strip(v, ignored) for v in value]
    return value


def differences(a: Any, b: Any, where: str = "$") -> Iterator[str]:
    """One line per JSON path at which a and b differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in b:
                yield f"{where}.{k}: only in the first"
            elif k not in a:
                yield f"{where}.{k}: only in the second"
            else:
                yield from differences(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{where}: {len(a)} items vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{where}[{i}]")
    elif a != b:
        yield f"{where}: {json.dumps(a)[:200]} != {json.dumps(b)[:200]}"


def report_pairs(a: Path, b: Path) -> list[tuple[str, Path, Path]]:
    if a.is_file() and b.is_file():
        return [(a.name, a, b)]
    names = sorted({p.parent.name for p in a.glob("*/report.json")} | {p.parent.name for p in b.glob("*/report.json")})
    return [(n, a / n / "report.json", b / n / "report.json") for n in names]


def diff(a: Path, b: Path, limit: int) -> int:
    failed = 0
    pairs = report_pairs(a, b)
    if not pairs:
        print(f"no report.json under {a} or {b}")
        return 2
    for name, ra, rb in pairs:
        if not ra.exists() or not rb.exists():
            print(f"{name}: missing {'first' if not ra.exists() else 'second'} report")
            failed += 1
            continue
        lines = list(differences(strip(json.loads(ra.read_text())), strip(json.loads(rb.read_text()))))
        print(f"{name}: {'identical' if not lines else f'{len(lines)} difference(s)'}")
        for line in lines[:limit]:
            print("   ", line)
        failed += bool(lines)
    return 1 if failed else 0


def datasets(demo: Path, sets: Path | None) -> dict[str, tuple[Path, list[str]]]:
    """name -> (root, extra scan arguments)."""
    from dsaudit.demo import DEMO_GROUP_REGEX, build_demo_dataset

    if not demo.exists():
        build_demo_dataset(demo)
    found = {"demo": (demo, ["--batch-size", "32", "--validation-split", "0.2", "--group-regex", DEMO_GROUP_REGEX])}
    for name in ("cifar", "ct", "digits"):
        if sets is not None and (sets / name).is_dir():
            found[name] = (sets / name, [])
        else:
            print(f"skipped {name}: no --sets folder holding it")
    if COVID_CT.is_dir():
        found["covid-ct"] = (COVID_CT, [])
    else:
        print(f"skipped covid-ct: {COVID_CT} is absent")
    return found


def capture(out: Path, sets: Path | None, demo: Path, extra: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for name, (root, args) in datasets(demo, sets).items():
        cmd = [sys.executable, "-m", "dsaudit.cli", "scan", str(root), "-f", "json", "-o", str(out / name),
               "--no-probe", "--no-cache", "--fail-on", "never", "-q", *args, *extra]
        rc = subprocess.run(cmd).returncode
        print(f"{name}: exit {rc} -> {out / name / 'report.json'}")
        if rc not in (0, 1):
            return rc
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diff", help="compare two report.json files or two capture folders")
    d.add_argument("a", type=Path)
    d.add_argument("b", type=Path)
    d.add_argument("--limit", type=int, default=20, help="differences printed per report")
    c = sub.add_parser("capture", help="scan the reference datasets into OUT/<name>/report.json")
    c.add_argument("out", type=Path)
    c.add_argument("--sets", type=Path, help="compare_tools.py --work folder with cifar/, ct/, digits/")
    c.add_argument("--demo-data", type=Path, default=Path(tempfile.gettempdir()) / "dsaudit-demo-data",
                   help="where the demo dataset is built once and reused")
    c.add_argument("scan_args", nargs="*", help="more arguments for every scan (after --)")
    args = ap.parse_args()
    if args.cmd == "diff":
        sys.exit(diff(args.a, args.b, args.limit))
    sys.exit(capture(args.out, args.sets, args.demo_data, args.scan_args))


if __name__ == "__main__":
    main()
