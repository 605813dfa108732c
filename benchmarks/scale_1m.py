"""A million real-photo-like images on one machine: wall time, peak memory, the planted copies found.

    python benchmarks/scale_1m.py                       # 1,000,000 images (hours on 2 cores)
    python benchmarks/scale_1m.py --n 100000            # the largest size that fits your time
    options: [--cifar-dir DIR|ARCHIVE] [--root DIR] [--jobs 2] [--seed 0] [--sizes 32,48,64] [--engine local|dask]

The images are the 50,000 CIFAR-10 training photos (`--cifar-dir`: the shared archive
`../shared/datasets/cifar10-train/cifar10-train.tar.gz`, unpacked once into a temporary folder, or
an unpacked folder) split with `--seed` into train/val (1/6 val), plus copies of train photos up
to --n images, each made by a random crop (80-95% of each side), a flip half of the time, colour
jitter (+-15% brightness, contrast, saturation) and JPEG re-encoding (quality 70-95) at one of
`--sizes` px (benchmarks/photo_tree.py), half of them into val and half into train beside their
source. At 1,000,000 that is about 19 copies of every photo; below 50,000 the photos are
subsampled and 2% are copies. Skips (exit 0) when there are no photos.

Then one cold `dsaudit scan` (every check but the probe, --jobs workers or, with --engine dask, a
LocalCluster of --jobs workers for the index pass and the search, an empty cache) runs in a child
process (photo_tree.measured_scan); printed: its wall time, the peak memory of its largest process
(the target is 4 GB) and of each phase of the scan, the stage timings, the candidates verified,
what was approximate (the k-NN over its budget: share compared and the sampled neighbour recall),
and the planted copies found: a copy counts as found when it ends in one duplicate group with its
source (with ~19 copies of each photo, a copy's nearest neighbours are often its siblings, and the
group is what the report gives).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from photo_tree import cifar_photos, measured_scan, write_photo_tree  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--cifar-dir", default="", help="CIFAR-10 train: the archive or an unpacked folder")
    ap.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "dsaudit-scale-1m"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="32,48,64", help="sizes (px) of the copies")
    ap.add_argument("--engine", choices=("local", "dask"), default="local",
                    help="dask: the index pass and the search on a LocalCluster of --jobs workers")
    args = ap.parse_args()
    photos = cifar_photos(args.cifar_dir, Path(args.root))
    if photos is None:
        print(f"skipped: no CIFAR-10 photos at {args.cifar_dir or 'the shared archive'} (pass --cifar-dir)")
        return
    sizes = tuple(int(s) for s in args.sizes.split(","))
    root = Path(args.root) / f"photos-{args.n}-seed{args.seed}-{'-'.join(map(str, sizes))}"
    t = time.perf_counter()
    planted = write_photo_tree(root, photos, args.n, seed=args.seed, sizes=sizes)
    print(f"dataset: {root} ({args.n:,} images, {len(planted):,} planted copies; "
          f"{time.perf_counter() - t:.0f} s to write or check)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        res = measured_scan(root, Path(tmp) / "cache", jobs=args.jobs, engine=args.engine)
    wall, peak = res["wall"], res["peak"]
    leak = res["leakage"]
    stages = leak.get("timings", {})
    print("| images | engine | cold scan | peak memory (largest process) | candidates verified |")
    print("| ---: | --- | ---: | ---: | ---: |")
    print(f"| {args.n:,} | {args.engine} | {res['seconds']:.0f} s ({wall:.0f} s with start-up) | {peak:.2f} GB "
          f"| {int(stages.get('candidates', 0)):,} |")
    timings = res["timings"]
    print("index timings:", {k: v for k, v in timings.items() if k != "checks"})
    print("leakage stages:", {k: round(v, 1) for k, v in stages.items() if k != "candidates"})
    print("approximate k-NN:", leak.get("approximate_knn", "none (every search exact)"))
    print("peak memory by phase (GB):", res["memory"]["phases"], "index stages:", res["memory"]["index_stages"])
    for b in res["budget"]:
        print("budget:", b["title"], b["evidence"])
    group_of = res["group_of"]
    for name, prefix in (("into val", "val/"), ("inside train", "train/")):
        sel = [(c, s) for c, s in planted if c.startswith(prefix)]
        hit = sum(1 for c, s in sel if c in group_of and group_of[c] == group_of.get(s))
        print(f"planted copies {name}: {hit / max(len(sel), 1):.3f} of {len(sel):,} in their source's group")


if __name__ == "__main__":
    main()
