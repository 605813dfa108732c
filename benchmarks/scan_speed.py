"""Whole cold scan and warm rescan against the floor, a plain Pillow decode of every file.

    python benchmarks/scan_speed.py                                   # real photos (CIFAR-10 train)
    python benchmarks/scan_speed.py --cifar-dir /work/data/cifar10/train   # reuse an unpacked copy
    python benchmarks/scan_speed.py --data noise --n 60000            # the 1/f-noise set (second row)
    options: [--n 60000] [--root DIR] [--jobs 2] [--seed 0] [--dump pairs.csv] [--no-cleanvision]

Real photos (default): the 50,000 CIFAR-10 training photos (`--cifar-dir`: the shared archive
`../shared/datasets/cifar10-train/cifar10-train.tar.gz`, unpacked once into a temporary folder, or
an unpacked folder), split with `--seed` into train/val class folders (1/6 val), plus planted
copies of train photos (random crop, flip, colour jitter, JPEG re-encoding; photo_tree.py) up to
--n images (at least 2%), half into val and half into train beside their source. Skips (exit 0)
when there are no photos. Real photos have many look-alikes (same class, similar backgrounds), so
far more candidates reach the costly stages than with noise images.

Noise (`--data noise`): a CIFAR-like tree of distinct 32x32 1/f-noise JPEGs (natural-image
spectra), 1% of the test images re-encoded/flipped/shifted copies of training images.

Measured in one run, each scan in its own process on a cold (then warm) dsaudit cache:
  floor:  Image.open + load of every file in a process pool of --jobs workers, before and after
          each scan (the median is the floor; on a shared machine the load moves);
  cold:   dsaudit.pipeline.scan with every check except the probe, --jobs workers, empty cache;
  warm:   the same scan again with the filled cache (a rescan of unchanged data);
  cleanvision: Imagelab.find_issues() with its default checks and n_jobs=1, when installed
          (`pip install -e .[bench]`);
and prints the ratios, every stage, the candidate counts, the peak memory (largest process), the
planted copies found, and what the within-split search did. --dump writes every matched pair
(relative paths, kind, distance, similarity, transform) of the cold scan to a CSV, so that two
versions of the code can be compared pair for pair (`cmp before.csv after.csv`).
"""

from __future__ import annotations

import argparse
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

from photo_tree import measured_scan, run_measured  # noqa: E402


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


CLEANVISION = r"""
import sys, time
from cleanvision import Imagelab
t = time.perf_counter()
lab = Imagelab(data_path=sys.argv[1], verbose=False)
lab.find_issues(n_jobs=1, verbose=False)
print(time.perf_counter() - t)
"""


def build_dataset(args) -> tuple[Path, list[tuple[str, str]] | None]:
    if args.data == "noise":
        root = Path(args.root) / f"noise-{args.n}"
        write_tree(root, args.n)
        return root, None
    from photo_tree import cifar_photos, write_photo_tree

    photos = cifar_photos(args.cifar_dir, Path(args.root))
    if photos is None:
        print(f"skipped: no CIFAR-10 photos at {args.cifar_dir or 'the shared archive'} "
              "(pass --cifar-dir, or --data noise)")
        raise SystemExit(0)
    root = Path(args.root) / f"photos-{args.n}-seed{args.seed}"
    return root, write_photo_tree(root, photos, args.n, seed=args.seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("photos", "noise"), default="photos",
                    help="photos: CIFAR-10 train with planted copies (default); noise: 1/f-noise images")
    ap.add_argument("--cifar-dir", default="",
                    help="CIFAR-10 train: the archive, or an unpacked folder of class folders "
                         "(default: ../shared/datasets/cifar10-train/cifar10-train.tar.gz)")
    ap.add_argument("--n", type=int, default=60000, help="images in the tree (photos: 50,000 + planted copies)")
    ap.add_argument("--seed", type=int, default=0, help="split and copies (photos)")
    ap.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "dsaudit-scan-speed"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--dump", default="", help="write every matched pair (a, b, kind, ...) to this CSV")
    ap.add_argument("--no-cleanvision", action="store_true", help="leave cleanvision out")
    args = ap.parse_args()
    t = time.perf_counter()
    root, planted = build_dataset(args)
    print(f"dataset: {root} ({args.data}; {time.perf_counter() - t:.0f} s to write or check)")
    paths = [str(p) for p in sorted(root.rglob("*.jpg"))]
    split_sizes: dict[str, int] = {}
    for p in paths:
        s = Path(p).relative_to(root).parts[0]
        split_sizes[s] = split_sizes.get(s, 0) + 1

    # drop the page cache effect of writing: read every file once before all runs
    for p in paths:
        with open(p, "rb") as fh:
            fh.read()
    floors = [floor(paths, args.jobs)]
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for name, dump in (("cold", args.dump), ("warm", "")):
            runs[name] = measured_scan(root, cache, jobs=args.jobs, dump=dump)
            floors.append(floor(paths, args.jobs))   # the machine's load moves: a floor after each run
    t_floor = float(np.median(floors))
    t_cv = peak_cv = None
    cv_note = "left out (--no-cleanvision)"
    if not args.no_cleanvision:
        try:
            import cleanvision  # noqa: F401  (benchmark-only: pip install -e .[bench])
        except ImportError:
            cv_note = "not installed (pip install -e .[bench]); skipped"
        else:
            wall, peak_cv, stdout = run_measured([sys.executable, "-c", CLEANVISION, str(root)], quiet=True)
            t_cv, cv_note = float(stdout.strip().splitlines()[-1]), f"{cleanvision.__version__}, n_jobs=1"

    cold, warm = runs["cold"], runs["warm"]
    print(f"files: {len(paths):,} ({', '.join(f'{k} {v:,}' for k, v in sorted(split_sizes.items()))}); "
          f"jobs: {args.jobs}")
    print("| | time | vs floor | peak memory |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| plain Pillow decode (floor), {args.jobs} processes (median of {len(floors)}: "
          f"{', '.join(f'{f:.1f}' for f in floors)} s) | {t_floor:.1f} s | 1.00x | |")
    print(f"| dsaudit scan, cold cache | {cold['seconds']:.1f} s | {cold['seconds'] / t_floor:.2f}x "
          f"| {cold['peak']:.2f} GB |")
    print(f"| dsaudit rescan, warm cache | {warm['seconds']:.2f} s | {warm['seconds'] / t_floor:.2f}x "
          f"| {warm['peak']:.2f} GB |")
    if t_cv is not None:
        print(f"| cleanvision ({cv_note}) | {t_cv:.1f} s | {t_cv / t_floor:.2f}x | {peak_cv:.2f} GB |")
    print(f"cold / warm: {cold['seconds'] / warm['seconds']:.1f}x; "
          + (f"cleanvision / dsaudit cold: {t_cv / cold['seconds']:.2f}x" if t_cv else f"cleanvision: {cv_note}"))
    timings = cold["timings"]
    print("index timings (cold):", {k: v for k, v in timings.items() if k != "checks"})
    print("check timings (cold):", timings.get("checks"))
    leak = cold["leakage"]
    stages = leak.get("timings", {})
    print("leakage stages (cold):", {k: round(v, 2) for k, v in stages.items() if k != "candidates"})
    print(f"candidates verified: {int(stages.get('candidates', 0)):,}; pairs found: {leak.get('pairs')}; "
          f"cross-split pairs: {leak.get('cross_split_pairs')}; groups: {leak.get('groups')}; "
          f"per kind: {leak.get('pairs_per_kind')}")
    for b in cold["budget"]:
        print("approximate search:", b["title"], b["evidence"])
    if not cold["budget"]:
        print("approximate search: none (every k-NN search exact, no budget finding)")
    print("peak memory by phase (cold, GB):", cold["memory"]["phases"], "index stages:",
          cold["memory"]["index_stages"])
    if planted is not None:
        from photo_tree import copies_found

        found = copies_found(planted, {tuple(p) for p in cold["pairs"]})
        print("planted copies found: " + "; ".join(
            f"{k} {found[k]:.3f} of {found[k + ' (n)']:,}" for k in ("into val", "inside train")))
    # what the k-NN alone must cost: its arithmetic at this machine's matrix-product rate
    from dsaudit.config import AuditConfig

    ref = "train"
    sizes = {("train" if s == ref else s): n for s, n in split_sizes.items()}
    flops, rate = knn_arithmetic(sizes, AuditConfig().leakage), matmul_rate(args.jobs)
    print(f"k-NN arithmetic: {flops / 1e12:.2f} TFLOP; float32 matrix products on {args.jobs} threads: "
          f"{rate / 1e9:.0f} GFLOP/s -> at least {flops / rate:.1f} s ({flops / rate / t_floor:.1f}x the floor) "
          "for an exact k-NN")
    if args.dump:
        print(f"pairs of the cold scan written to {args.dump}")


if __name__ == "__main__":
    main()
