"""Recall per transform and false flags on clean images, for the near-duplicate stage of dsaudit.

    python benchmarks/leakage_recall.py [--per 120] [--sweep] [--seed 0]

Three real-image sets (nothing downloaded):
  photo32  windows of scikit-learn's two photos, downscaled to 32x32 (CIFAR-like);
  ct       COVID-CT slices from ../shared/datasets/covid-ct (skipped when absent), max side 256;
  digits   scikit-learn's handwritten digits, upscaled to 64x64 (the dsaudit demo's images).
For each set, half of the images are "train"; for `--per` of them a transformed copy goes to
"val" (one copy per transform: jpeg, resize, brightness/contrast, hflip, vflip, rot90/180/270,
crop up to 10%, shift up to 10%, small rotation 2-10 degrees); the other half of the images go to
"val" untouched as clean, unrelated images (for CT: other papers than the train side, so no
slices of one patient are on both sides). Matching runs exactly as in a scan (hashing.finalize,
then similarity.matching.near_matches with the default LeakageConfig). Recall = share of planted copies
matched to their source; false flags = share of clean val images matched to any train image.
--sweep runs the full alignment search on every candidate and prints recall/false flags for
other verify thresholds (the row -2.00 is the candidate stage alone: its recall is the ceiling).
The sweep rows apply one threshold to the best similarity of each pair, without the smooth-image,
aperture and pixel-close rules, so they show the raw trade-off, not what a scan reports (the first
row does).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import leak_data as L  # noqa: E402
from dsaudit.similarity.matching import matches_with_views  # noqa: E402
from dsaudit.similarity.views import Views  # noqa: E402
from dsaudit.config import LeakageConfig  # noqa: E402
from dsaudit.index import hashing  # noqa: E402

TRANSFORMS = list(L.IMAGE_TRANSFORMS)


def thumbs_of(images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thumbnails, inner views (zeros where none), has an inner view) as a scan makes them."""
    views = [hashing.thumbnails(im) for im in images]
    th = np.stack([t for t, _, _ in views])
    inner = np.stack([i if i is not None else np.zeros_like(t) for t, i, _ in views])
    return th, inner, np.array([i is not None for _, i, _ in views])


def build_photo(per: int, rng: np.random.Generator):
    srcs = L.photo_sources(48, 32)
    order = rng.permutation(len(srcs))
    half = len(srcs) // 2
    train = [srcs[i] for i in order[:half]]
    clean = [srcs[i].crop() for i in order[half:]]
    planted = []
    for t in TRANSFORMS:
        for i in range(min(per, len(train))):
            planted.append((t, i, L.source_transform(t, train[i], rng)))
    return [s.crop() for s in train], clean, planted


def build_ct(per: int, rng: np.random.Generator):
    ct = L.ct_images()
    if not ct:
        return None
    def paper(rel: str) -> str:
        name = rel.rsplit("/", 1)[-1]
        return name.split("-p")[0] if rel.startswith("CT_COVID") else "noncovid"
    papers = sorted({paper(r) for r, _ in ct if r.startswith("CT_COVID")})
    rng.shuffle(papers)
    clean_papers = set(papers[: len(papers) // 2])
    train = [im for r, im in ct if paper(r) not in clean_papers]
    clean = [im for r, im in ct if paper(r) in clean_papers]
    idx = rng.permutation(len(train))[:per]
    planted = [(t, int(i), L.ALL_TRANSFORMS[t](train[i], rng)) for t in TRANSFORMS for i in idx]
    return train, clean, planted


def build_digits(per: int, rng: np.random.Generator):
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = [Image.fromarray((255 - im * (255 / 16)).astype(np.uint8), "L")
            .resize((64, 64), Image.Resampling.BICUBIC).convert("RGB") for im in d.images]
    order = rng.permutation(len(imgs))
    half = len(imgs) // 2
    train = [imgs[i] for i in order[:half]]
    clean = [imgs[i] for i in order[half:]]
    planted = [(t, i, L.ALL_TRANSFORMS[t](train[i], rng)) for t in TRANSFORMS for i in range(per)]
    return train, clean, planted


def evaluate(name, data, cfg: LeakageConfig, sweep: bool, search_thr: float = 0.0):
    train, clean, planted = data
    images = train + clean + [q for _, _, q in planted]
    th, inner, has_inner = thumbs_of(images)
    feats = hashing.finalize({"thumb": th})
    codes = np.array([0] * len(train) + [1] * (len(clean) + len(planted)))
    timings: dict[str, float] = {}
    t = time.perf_counter()
    views = Views(th, feats["phash"], feats["desc"], smooth=None if sweep else feats["smooth"], inner=inner,
                  has_inner=has_inner)
    m = matches_with_views(views, codes, cfg, ref_code=0, timings=timings, keep_all=sweep)
    dt = time.perf_counter() - t
    lo, hi = np.minimum(m["a"], m["b"]), np.maximum(m["a"], m["b"])
    m = m.assign(a=lo, b=hi)
    m = m[(codes[m["a"]] == 0) & (codes[m["b"]] == 1)]
    c0 = len(train)
    p0 = len(train) + len(clean)
    thresholds = [cfg.verify_threshold] + ([-2.0, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96] if sweep else [])
    rows = []
    for thr in thresholds:
        mm = m[m["similarity"] >= thr]
        if sweep and thr > 0:
            mm = mm[(mm["stage"] < 2) | (mm["similarity"] >= max(thr, search_thr or cfg.search_threshold))]
        pairs = set(zip(mm["a"].tolist(), mm["b"].tolist()))
        flagged = set(mm["b"].tolist())
        rec = {}
        for k, (t, i, _) in enumerate(planted):
            rec.setdefault(t, []).append((i, p0 + k) in pairs)
        fp = np.mean([(c0 + j) in flagged for j in range(len(clean))])
        rows.append((thr, {t: float(np.mean(v)) for t, v in rec.items()}, float(fp)))
    print(f"\n{name}: {len(train)} train, {len(clean)} clean val, {len(planted)} planted copies; "
          f"{int(timings.get('candidates', 0))} candidates verified in {dt:.1f} s; "
          f"{int(has_inner.sum())} images with a flat border (a second view)")
    print("| verify thr | " + " | ".join(TRANSFORMS) + " | clean val falsely flagged |")
    print("|---" * (len(TRANSFORMS) + 2) + "|")
    for thr, rec, fp in rows:
        print(f"| {thr:.2f} | " + " | ".join(f"{rec.get(t, float('nan')):.3f}" for t in TRANSFORMS)
              + f" | {fp:.3%} |")
    return rows


def add_set_arguments(ap: argparse.ArgumentParser, sets: str = "photo32,ct,digits") -> None:
    """--per, --seed and --sets, as every benchmark on these sets takes them (benchmark_sets)."""
    ap.add_argument("--per", type=int, default=100, help="copies per transform")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default=sets, help="comma-separated: photo32, ct, digits")


def benchmark_sets(names: str, per: int, seed: int):
    """(name, (train, clean, planted)) for each of the comma-separated sets (photo32, ct, digits),
    built with `per` copies per transform from a generator seeded with `seed`; a set whose images
    are not on this machine is skipped with a line saying so. Shared by the benchmarks that use
    this data (candidate_rank.py, knn_bound.py)."""
    builders = {"photo32": build_photo, "ct": build_ct, "digits": build_digits}
    for name in names.split(","):
        data = builders[name](per, np.random.default_rng(seed))
        if data is None:
            print(f"\n{name}: skipped (data not available)")
            continue
        yield name, data


def main() -> None:
    ap = argparse.ArgumentParser()
    add_set_arguments(ap)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--search-thr", type=float, default=0.0)
    ap.add_argument("--extra", action="store_true",
                    help="the further edits of leak_data.EXTRA_TRANSFORMS (one-axis crop, blur, noise, grey, gamma, "
                         "colour, equalise, pad, stretch, annotate, republish) instead of the issue's list")
    args = ap.parse_args()
    if args.extra:
        TRANSFORMS[:] = list(L.EXTRA_TRANSFORMS)
    cfg = LeakageConfig()
    print(f"LeakageConfig: near_threshold={cfg.near_threshold} verify_threshold={cfg.verify_threshold} "
          f"search_threshold={cfg.search_threshold} knn={cfg.knn} knn_shifts={cfg.knn_shifts}")
    for name, data in benchmark_sets(args.sets, args.per, args.seed):
        evaluate(name, data, cfg, args.sweep, args.search_thr)


if __name__ == "__main__":
    main()
