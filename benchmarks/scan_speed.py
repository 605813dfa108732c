"""Whole cold scan of many small JPEGs versus the floor: a plain Pillow decode of every file.

    python benchmarks/scan_speed.py [--n 60000] [--root /tmp/dsaudit-scan-speed] [--jobs 2] [--dump pairs.csv]

Writes (once) a CIFAR-like tree ROOT/{train,test}/<10 classes>/*.jpg of 32x32 JPEGs (5/6 train,
1/6 test) of distinct 1/f-noise colour images (natural-image spectra; there are not 60,000 distinct
real photos on this machine, and crops of the two bundled photos overlap each other), with 1% of
the test images being re-encoded/flipped/shifted copies of training images. Then measures, each on a cold
dsaudit cache:
  floor: Image.open + load of every file in a process pool of --jobs workers;
  scan:  dsaudit.pipeline.scan with every check except the probe (probe.mode=off), --jobs workers;
and prints both, their ratio, the leakage stage timings and what leakage was found. --dump writes
every matched pair (relative paths, kind, distance, similarity, transform) to a CSV, so that two
versions of the code can be compared pair for pair (`cmp before.csv after.csv`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct 32x32 RGB images of 1/f noise (natural-image-like spectra), uint8."""
    f = np.sqrt(np.fft.fftfreq(32)[:, None] ** 2 + np.fft.fftfreq(32)[None, :] ** 2)
    f[0, 0] = 1.0
    amp = 1.0 / f ** 1.1
    amp[0, 0] = 0.0
    spec = amp[None, None] * np.exp(2j * np.pi * rng.uniform(size=(n, 3, 32, 32)))
    mix = rng.uniform(0.3, 1.0, size=(n, 3, 1, 1))
    x = np.fft.ifft2(spec).real
    x = x[:, :1] * (1 - mix) + x * mix            # correlated colour channels
    x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / (x.std(axis=(1, 2, 3), keepdims=True) + 1e-9)
    x = x * rng.uniform(30, 60, size=(n, 1, 1, 1)) + rng.uniform(80, 170, size=(n, 1, 1, 1))
    return np.clip(x, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def write_tree(root: Path, n: int, seed: int = 0) -> None:
    marker = root / f".complete-{n}"
    if marker.exists():
        return
    rng = np.random.default_rng(seed)
    n_test = n // 6
    n_train = n - n_test
    classes = [f"c{k}" for k in range(10)]
    kept: list[Image.Image] = []
    for start in range(0, n, 5000):
        batch = _pink(rng, min(5000, n - start))
        for k, arr in enumerate(batch):
            i = start + k
            img = Image.fromarray(arr)
            split = "train" if i < n_train else "test"
            if split == "test" and rng.uniform() < 0.01 and kept:
                src = kept[int(rng.integers(0, len(kept)))]
                img = [src.transpose(Image.Transpose.FLIP_LEFT_RIGHT), src,
                       Image.fromarray(np.roll(np.asarray(src), 2, axis=1))][int(rng.integers(0, 3))]
            folder = root / split / classes[i % 10]
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{i:06d}.jpg", quality=int(rng.integers(75, 95)))
            if split == "train" and len(kept) < 2000:
                kept.append(img)
    marker.write_text("ok")


def _decode(path: str) -> int:
    with Image.open(path) as im:
        im.load()
        return im.size[0]


def floor(paths: list[str], jobs: int) -> float:
    t = time.perf_counter()
    with Pool(jobs) as pool:
        for _ in pool.imap_unordered(_decode, paths, chunksize=256):
            pass
    return time.perf_counter() - t


def knn_arithmetic(split_sizes: dict[str, int], cfg) -> float:
    """Floating-point operations of the scan's k-NN searches (multiply-adds x 2): val/test images
    in all their versions (shifts, one-axis squeezes) against every train image, and each split
    against itself as `within_search_plan` decides. A lower bound: no view searches, no blocks
    scored twice."""
    from dsaudit.similarity.matching import KNN_SHIFTS, KNN_SQUEEZES, within_search_plan
    from dsaudit.index.hashing import descriptors

    dim = descriptors(np.zeros((1, 32, 32), np.uint8)).shape[1]
    versions = len(KNN_SHIFTS) + len(KNN_SQUEEZES) if cfg.knn_shifts else 1
    train = split_sizes.get("train", 0)
    queries = sum(n for s, n in split_sizes.items() if s != "train")
    flops = 2.0 * dim * versions * queries * train
    for n in split_sizes.values():
        plan = within_search_plan(n, cfg)
        flops += 2.0 * dim * n * n * {"shifts": versions, "no-shifts": 1}.get(plan, 0)
    return flops


def matmul_rate(jobs: int, seconds: float = 1.0) -> float:
    """float32 matrix products per second on `jobs` BLAS threads, in the shapes the k-NN uses
    (1,152 stacked query rows x 64 against 2,048 references)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.normal(size=(1152, 64)).astype(np.float32)
    b = rng.normal(size=(64, 2048)).astype(np.float32)
    with threadpool_limits(limits=jobs, user_api="blas"):
        a @ b
        t, k = time.perf_counter(), 0
        while time.perf_counter() - t < seconds:
            a @ b
            k += 1
        return 2.0 * a.shape[0] * a.shape[1] * b.shape[1] * k / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "dsaudit-scan-speed"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--dump", default="", help="write every matched pair (a, b, kind, ...) to this CSV")
    args = ap.parse_args()
    root = Path(args.root) / str(args.n)
    t = time.perf_counter()
    write_tree(root, args.n)
    print(f"dataset: {root} ({time.perf_counter() - t:.0f} s to write or check)")
    paths = [str(p) for p in sorted(root.rglob("*.jpg"))]

    from dsaudit.config import AuditConfig, ProbeConfig
    from dsaudit.pipeline import scan
    import dsaudit.similarity.matching as leakage

    captured: dict = {}
    if args.dump:  # keep the full pair list (findings carry at most 50 pairs each)
        _analyse = leakage.analyse

        def analyse(ctx):
            res = _analyse(ctx)
            captured.update(pairs=res["pairs"], table=ctx.index.table.reset_index(drop=True))
            return res

        leakage.analyse = analyse

    # drop the page cache effect of writing: read every file once before both runs
    for p in paths:
        with open(p, "rb") as fh:
            fh.read()
    t_floor = floor(paths, args.jobs)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["DSAUDIT_CACHE_DIR"] = cache
        cfg = AuditConfig(jobs=args.jobs, probe=dataclasses.replace(ProbeConfig(), mode="off"))
        t = time.perf_counter()
        res = scan(root, cfg)
        t_scan = time.perf_counter() - t
    print(f"files: {len(paths):,}; jobs: {args.jobs}")
    print(f"| plain Pillow decode (floor) | {t_floor:.1f} s | 1.00x |")
    print(f"| dsaudit scan, cold cache    | {t_scan:.1f} s | {t_scan / t_floor:.2f}x |")
    timings = res.meta.get("timings", {})
    print("index timings:", {k: v for k, v in timings.items() if k != "checks"})
    print("check timings:", timings.get("checks"))
    # what the k-NN alone must cost: its arithmetic at this machine's matrix-product rate
    sizes = {"train": len([p for p in paths if "/train/" in p]), "test": len([p for p in paths if "/test/" in p])}
    flops, rate = knn_arithmetic(sizes, cfg.leakage), matmul_rate(args.jobs)
    print(f"k-NN arithmetic: {flops / 1e12:.2f} TFLOP; float32 matrix products on {args.jobs} threads: "
          f"{rate / 1e9:.0f} GFLOP/s -> at least {flops / rate:.1f} s ({flops / rate / t_floor:.1f}x the floor) "
          "for the k-NN alone")
    leak = res.sections.get("leakage", {})
    print("leakage:", {k: leak.get(k) for k in ("pairs", "cross_split_pairs", "groups", "pairs_per_kind")})
    print("leakage timings:", leak.get("timings"))
    if args.dump:
        pairs = captured["pairs"].copy()
        paths_ = captured["table"]["path"].astype(str).to_numpy()
        pairs["a"] = paths_[pairs["a"].to_numpy()]
        pairs["b"] = paths_[pairs["b"].to_numpy()]
        pairs.sort_values(["a", "b"]).to_csv(args.dump, index=False)
        print(f"pairs written to {args.dump}")


if __name__ == "__main__":
    main()
