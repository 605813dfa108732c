"""The index pass alone (and the content checks on its index) against the decode floor, in one run.

    python benchmarks/index_speed.py --cifar-dir /work/data/cifar10/train --jobs 2
    python benchmarks/index_speed.py --cifar-dir ... --src /tmp/old/src --src src   # two versions
    options: [--n 60000] [--root DIR] [--seed 0] [--repeats 1] [--no-checks]

A quicker loop than scan_speed.py (which also runs the near-duplicate search, minutes on 60,000
real photos) on the same tree: the CIFAR-10 photos split into train/val plus planted copies
(photo_tree.py; the tree scan_speed.py builds and caches under --root). Each repeat, for each
--src (a source folder; default this checkout's src), in a child process of its own:
  floor:  Image.open + load of every file in a process pool of --jobs workers, before each run;
  cold:   pipeline.build (the index pass) with an empty record cache and --jobs workers, and its
          stages (decode = the workers' read + decode + per-file features, cache write, assemble,
          finalize = the vectorised features over all images);
  checks: the content checks (DSA4xx, the probe's DSA431 off) on that index, the shared content
          analysis and each check timed, as pipeline.run_checks times them in a scan.
Besides wall seconds it prints CPU seconds (the process and its workers, user + system): on a
shared machine the load moves wall times by several times between runs, CPU time much less.
Ratios to the floor measured beside each run are what to read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def cpu_seconds() -> float:
    """User + system CPU of this process and its waited-for children (the workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def floor_run(paths: list[str], jobs: int) -> tuple[float, float]:
    from scan_speed import floor

    c = cpu_seconds()
    wall = floor(paths, jobs)
    return wall, cpu_seconds() - c


def child(root: Path, jobs: int, checks: bool) -> dict:
    """One cold index pass (and the content checks) in this process."""
    from dsaudit.config import AuditConfig
    from dsaudit.pipeline import build, run_checks

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DSAUDIT_CACHE_DIR"] = str(Path(tmp) / "cache")
        cfg = AuditConfig(jobs=jobs)
        c, t = cpu_seconds(), time.perf_counter()
        index = build(root, cfg)
        out.update(wall=time.perf_counter() - t, cpu=cpu_seconds() - c,
                   stages={k: round(v, 2) for k, v in index.timings.items()})
        if checks:
            cfg = dataclasses.replace(cfg, select=("DSA4*",), probe=dataclasses.replace(cfg.probe, mode="off"))
            c, t = cpu_seconds(), time.perf_counter()
            _, errors, ctx, timings = run_checks(index, cfg)
            if errors:
                raise SystemExit(f"content checks failed: {errors[0].error}")
            out.update(checks_wall=time.perf_counter() - t, checks_cpu=cpu_seconds() - c,
                       analyses=ctx.timings, checks={k: v for k, v in timings.items() if v >= 0.005})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar-dir", default="", help="CIFAR-10 train (archive or unpacked folder), as scan_speed.py")
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "dsaudit-scan-speed"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--src", action="append", default=[],
                    help="source folder to time (repeatable: versions side by side; default ./src)")
    ap.add_argument("--no-checks", action="store_true", help="time the index pass only")
    ap.add_argument("--_child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(json.dumps(child(Path(args._child), args.jobs, not args.no_checks)))
        return
    sys.path.insert(0, str(HERE.parent / "src"))
    from photo_tree import cifar_photos, write_photo_tree

    photos = cifar_photos(args.cifar_dir, Path(args.root))
    if photos is None:
        print(f"skipped: no CIFAR-10 photos at {args.cifar_dir or 'the shared archive'} (pass --cifar-dir)")
        return
    root = Path(args.root) / f"photos-{args.n}-seed{args.seed}"
    write_photo_tree(root, photos, args.n, seed=args.seed)
    paths = [str(p) for p in sorted(root.rglob("*.jpg"))]
    for p in paths:   # the page cache: every run reads from memory
        with open(p, "rb") as fh:
            fh.read()
    sources = [str(Path(s).resolve()) for s in (args.src or [str(HERE.parent / "src")])]
    rows: dict[str, list[tuple[tuple[float, float], dict]]] = {s: [] for s in sources}
    for rep in range(args.repeats):
        for src in sources:
            fl = floor_run(paths, args.jobs)
            cmd = [sys.executable, __file__, "--_child", str(root), "--jobs", str(args.jobs)]
            cmd += ["--no-checks"] if args.no_checks else []
            res = json.loads(subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=src), check=True,
                                            stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1])
            rows[src].append((fl, res))
            print(f"{src} run {rep + 1}: {len(paths):,} files; floor {fl[0]:.2f} s wall / {fl[1]:.2f} s CPU; "
                  f"index pass {res['wall']:.2f} s wall ({res['wall'] / fl[0]:.2f}x) / {res['cpu']:.2f} s CPU "
                  f"({res['cpu'] / fl[1]:.2f}x); stages {res['stages']}")
            if "checks" in res:
                print(f"  content checks {res['checks_wall']:.2f} s wall / {res['checks_cpu']:.2f} s CPU; "
                      f"analysis {res['analyses']}; checks {res['checks']}")
    for src, got in rows.items():
        wall = float(np.median([r['wall'] / f[0] for f, r in got]))
        cpu = float(np.median([r['cpu'] / f[1] for f, r in got]))
        print(f"{src}: index pass / floor, median of {len(got)}: {wall:.2f}x wall, {cpu:.2f}x CPU")


if __name__ == "__main__":
    main()
