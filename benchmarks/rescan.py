"""Cold scan vs rescan of an unchanged dataset (the record cache at work).

    python benchmarks/rescan.py                      # covid-ct (if present) + a generated 5,000-image set
    python benchmarks/rescan.py --generated 20000    # a larger generated set
    python benchmarks/rescan.py --root DIR           # any dataset

Each dataset is scanned as `dsaudit scan` would (all checks but the probe), first with an empty
cache folder, then again with the filled one, alternating cold/warm pairs `--repeats` times. It
prints the median of each and their ratio: ratios side by side are robust on noisy machines,
absolute seconds are not. The whole command line run (Python start-up included) is timed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
COVID = REPO.parent / "shared" / "datasets" / "covid-ct"


def generate(root: Path, n: int, side: int = 96, seed: int = 0) -> Path:
    """n distinct JPEG/PNG images in train/val class folders, made from smooth random fields."""
    if root.exists() and sum(1 for _ in root.rglob("*.*")) >= n:
        return root
    rng = np.random.default_rng(seed)
    for i in range(n):
        split = "train" if i % 5 else "val"
        label = f"class_{i % 10}"
        low = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((side, side), Image.Resampling.BICUBIC)
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        if i % 3:
            img.save(folder / f"{i:06d}.jpg", quality=90)
        else:
            img.save(folder / f"{i:06d}.png")
    return root


def timed_cli(root: Path, out: Path, cache: Path) -> float:
    env = dict(os.environ, DSAUDIT_CACHE_DIR=str(cache))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dsaudit.cli", "scan", str(root), "-o", str(out), "-f", "json",
                    "-q", "--no-probe", "--fail-on", "never"], check=True, env=env)
    return time.perf_counter() - t0


def timed_inprocess(root: Path, cache: Path) -> float:
    from dsaudit.config import AuditConfig, ProbeConfig
    from dsaudit.pipeline import scan

    os.environ["DSAUDIT_CACHE_DIR"] = str(cache)
    t0 = time.perf_counter()
    scan(root, AuditConfig(probe=ProbeConfig(mode="off")))
    return time.perf_counter() - t0


def bench(name: str, root: Path, repeats: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="dsaudit-rescan-"))
    cold_cli, warm_cli, cold_in, warm_in = [], [], [], []
    try:
        for r in range(repeats):
            cache = work / f"cache{r}"
            cold_cli.append(timed_cli(root, work / "out", cache))
            warm_cli.append(timed_cli(root, work / "out", cache))
            cache2 = work / f"cache-in{r}"
            cold_in.append(timed_inprocess(root, cache2))
            warm_in.append(timed_inprocess(root, cache2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row = {"dataset": name, "files": sum(1 for p in root.rglob("*") if p.is_file()),
           "cold_s": statistics.median(cold_in), "warm_s": statistics.median(warm_in),
           "cold_cli_s": statistics.median(cold_cli), "warm_cli_s": statistics.median(warm_cli)}
    row["ratio"] = row["cold_s"] / row["warm_s"]
    row["ratio_cli"] = row["cold_cli_s"] / row["warm_cli_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="scan this dataset only")
    parser.add_argument("--generated", type=int, default=5000, help="size of the generated dataset")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    targets = []
    if args.root:
        targets.append((args.root.name, args.root))
    else:
        if COVID.is_dir():
            targets.append(("covid-ct", COVID))
        gen = generate(Path(tempfile.gettempdir()) / f"dsaudit-bench-gen-{args.generated}", args.generated)
        targets.append((f"generated-{args.generated}", gen))
    print(f"cores: {os.cpu_count()}  repeats: {args.repeats} (medians)\n")
    print("| dataset | files | cold scan (s) | rescan (s) | ratio | cold CLI (s) | rescan CLI (s) | ratio CLI |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, root in targets:
        r = bench(name, root, args.repeats)
        print(f"| {r['dataset']} | {r['files']} | {r['cold_s']:.2f} | {r['warm_s']:.2f} | {r['ratio']:.1f}x | "
              f"{r['cold_cli_s']:.2f} | {r['warm_cli_s']:.2f} | {r['ratio_cli']:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
