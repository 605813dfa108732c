"""Content checks on real photos with planted problems: quality flags, drift, label errors, cost.

    python benchmarks/content_checks.py [--cifar DIR] [--covid DIR] [--per-class 500] [--probe]
                                        [--label-budget SECONDS] [--only cifar|covid]
                                        [--work /tmp/dsaudit-content-bench] [--seed 0] [--cost 2000]

Builds (once per setting, under --work) two datasets from real images, each as train / val / test:

* CIFAR-10 train (``--cifar``: a folder of <class>/*.jpg; default: unpack
  ../shared/datasets/cifar10-train/cifar10-train.tar.gz into --work): --per-class images per class in
  train, a fifth of that in val and in test, all disjoint;
* COVID-CT (``--covid``, default ../shared/datasets/covid-ct): 70% train, 15% val, 15% test.

Planted, with a fixed seed: in train, 2% of the images darkened (x0.25), 2% blurred (Gaussian,
radius 1.2 px at 32 px, scaled with the image side), 1% blanked (one colour plus noise of 1.5 grey
levels), and 5% of the other training images moved to a random other class (label flips); val is
drawn from the same source as train, untouched; test comes from a shifted source: darker (x0.7),
half the side (CIFAR 32 -> 16 px... resized) and another format (CIFAR: PNG instead of JPEG; CT: JPEG
instead of PNG).

Prints per quality flag its recall on the planted images, the share of normal images it flags and
its precision; the domain-classifier AUC (with its 95% interval) for val (same source) and test
(shifted) and whether DSA410/DSA411 report drift; the precision at k (k = number of flips) of the
neighbour ranking (DSA430) and, with --probe, of confident learning on the probe CNN (DSA431), against
chance (k / training images); and each content check's time next to the index build.

--cost N times the per-file work of the index pass (read, hash, decode, extract) on N CIFAR files
and on the COVID-CT files, with and without the content properties, in alternating rounds in one
process, plus what hashing.complete spends on them per file (the grey statistics of 32x32 images
and the colour statistics of all, measured over all files at once): the share the properties add.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

SHARED = HERE.parent.parent / "shared" / "datasets"
FLAWS = {"dark": "DSA401", "blur": "DSA403", "blank": "DSA404"}


def cifar_source(arg: str | None, work: Path) -> Path | None:
    if arg:
        return Path(arg)
    tar = SHARED / "cifar10-train" / "cifar10-train.tar.gz"
    if not tar.is_file():
        return None
    out = work / "cifar10-unpacked"
    if not (out / "train").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar) as t:
            t.extractall(out, filter="data")
    return out / "train"


def _flaw(img: Image.Image, flaw: str, rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(img.convert("RGB"), dtype=np.float64)
    if flaw == "dark":
        return Image.fromarray((arr * 0.25).astype(np.uint8))
    if flaw == "blur":
        return img.convert("RGB").filter(ImageFilter.GaussianBlur(1.2 * max(img.size) / 32))
    colour = rng.uniform(20, 235, 3)
    noise = rng.normal(0, 1.5, arr.shape)
    return Image.fromarray(np.clip(colour + noise, 0, 255).astype(np.uint8))


def _shift(img: Image.Image) -> Image.Image:
    arr = np.asarray(img.convert("RGB"), dtype=np.float64) * 0.7
    small = Image.fromarray(arr.astype(np.uint8))
    return small.resize((max(8, img.size[0] // 2), max(8, img.size[1] // 2)), Image.Resampling.BILINEAR)


def build_set(name: str, files: dict[str, list[Path]], work: Path, fractions: tuple[float, float],
              shifted_format: str, seed: int) -> tuple[Path, dict]:
    """Write ROOT/{train,val,test}/<class>/... with the planted problems; returns (root, truth)."""
    root = work / name
    truth: dict = {"flaws": {}, "flips": {}, "normal": set()}
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    classes = sorted(files)
    train_items: list[tuple[str, Path]] = []
    for c in classes:
        fs = list(files[c])
        order = rng.permutation(len(fs))
        n_val = int(round(fractions[0] * len(fs)))
        n_test = int(round(fractions[1] * len(fs)))
        val = [fs[i] for i in order[:n_val]]
        test = [fs[i] for i in order[n_val:n_val + n_test]]
        train = [fs[i] for i in order[n_val + n_test:]]
        for f in val:
            dst = root / "val" / c / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f, dst)
        for f in test:
            dst = root / "test" / c / (f.stem + "." + shifted_format.lower().replace("jpeg", "jpg"))
            dst.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(f) as im:
                _shift(im).save(dst, format=shifted_format)
        train_items += [(c, f) for f in train]
    n = len(train_items)
    order = rng.permutation(n)
    n_dark, n_blur, n_blank, n_flip = (int(round(x * n)) for x in (0.02, 0.02, 0.01, 0.05))
    plan = (["dark"] * n_dark + ["blur"] * n_blur + ["blank"] * n_blank + ["flip"] * n_flip)
    role = {int(i): plan[k] for k, i in enumerate(order[:len(plan)])}
    for i, (c, f) in enumerate(train_items):
        what = role.get(i, "")
        label = c
        if what == "flip":
            label = classes[(classes.index(c) + 1 + int(rng.integers(len(classes) - 1))) % len(classes)]
        dst = root / "train" / label / f"{c}_{f.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        rel = f"train/{label}/{c}_{f.name}"
        if what in FLAWS:
            with Image.open(f) as im:
                _flaw(im, what, rng).save(dst.with_suffix(".png"), format="PNG")
            rel = rel.rsplit(".", 1)[0] + ".png"
            truth["flaws"][rel] = what
        else:
            os.symlink(f, dst)
            if what == "flip":
                truth["flips"][rel] = c
            else:
                truth["normal"].add(rel)
    return root, truth


def evaluate(name: str, root: Path, truth: dict, probe: bool, seed: int, label_budget: float | None = None) -> None:
    from dsaudit.config import AuditConfig, ContentConfig, ProbeConfig
    from dsaudit.content.analysis import ContentAnalysis
    from dsaudit.pipeline import build, run_checks

    content = ContentConfig() if label_budget is None else ContentConfig(label_probe_budget=label_budget)
    cfg = AuditConfig(select=("DSA4*",), seed=seed, cache=False, content=content,
                      probe=ProbeConfig(mode="on" if probe else "off"))
    t0 = time.perf_counter()
    index = build(root, cfg)
    t_index = time.perf_counter() - t0
    findings, errors, ctx, timings = run_checks(index, cfg)
    if errors:
        print("check errors:", [e.error for e in errors])
    by_id: dict[str, list] = {}
    for f in findings:
        by_id.setdefault(f.check_id, []).append(f)
    n_train = sum(1 for p in index.table["path"] if str(p).startswith("train/"))
    print(f"\n== {name}: {len(index.table)} images ({n_train} train), index {t_index:.1f} s, "
          f"content checks {sum(timings.values()):.1f} s: "
          + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    normal = truth["normal"]
    print(f"{'flag':8s} {'planted':>7s} {'recall':>7s} {'normal flagged':>15s} {'precision':>9s}")
    for flaw, check_id in FLAWS.items():
        planted = {p for p, w in truth["flaws"].items() if w == flaw}
        flagged = {p for f in by_id.get(check_id, []) for p in f.paths}
        train_flagged = {p for p in flagged if p.startswith("train/")}
        hit = len(planted & flagged)
        fp_normal = len(normal & flagged)
        prec = hit / len(train_flagged) if train_flagged else float("nan")
        print(f"{check_id:8s} {len(planted):7d} {hit / max(len(planted), 1):7.1%} "
              f"{fp_normal:6d} ({fp_normal / len(normal):5.2%}) {prec:9.1%}")
    for check_id in ("DSA402", "DSA405", "DSA406", "DSA420", "DSA430"):
        flagged = {p for f in by_id.get(check_id, []) for p in f.paths}
        print(f"{check_id:8s} flags {len(normal & flagged)} of {len(normal)} normal training images "
              f"({len(normal & flagged) / len(normal):.2%}), {len(flagged)} in all")
    drift = ctx.sections.get("content", {}).get("drift", {})
    reported = {f.evidence.get("split") for cid in ("DSA410", "DSA411") for f in by_id.get(cid, [])}
    for split in ("val", "test"):
        d = drift.get(split, {}).get("domain")
        if d:
            props = [k for k, v in drift[split].get("properties", {}).items() if v.get("drifted")]
            print(f"drift {split:4s} ({'same source' if split == 'val' else 'shifted'}): AUC {d['auc']:.3f} "
                  f"[{d['interval'][0]:.3f}, {d['interval'][1]:.3f}], DSA411 "
                  f"{'drift' if d['drifted'] else 'none'}, DSA410 drifted: {', '.join(props) or 'none'}"
                  f"{'' if split in reported or not (d['drifted'] or props) else ' (?)'}")
    flips = truth["flips"]
    k = len(flips)
    frame = ctx.result(ContentAnalysis).frame
    paths = frame["path"].to_numpy()
    is_train = np.array([str(p).startswith("train/") for p in paths])
    rank = ctx.artifacts.get("content.label_ranking.neighbours")
    if rank is not None and k:
        order = [i for i in rank["order"] if is_train[i]][:k]
        hits = sum(1 for i in order if paths[i] in flips)
        print(f"labels neighbours (DSA430): precision@{k} {hits / k:.3f} (chance {k / n_train:.3f}, "
              f"{hits / k / (k / n_train):.1f}x)")
    pr = ctx.artifacts.get("content.label_ranking.probe")
    if pr is not None:
        rows = pr["rows"]
        sub_flips = sum(1 for r in rows if paths[r] in flips)
        kk = max(sub_flips, 1)
        top = [paths[rows[i]] for i in pr["ranked"][:kk]]
        hits = sum(1 for p in top if p in flips)
        lp = ctx.sections["content"]["label_probe"]
        print(f"labels probe (DSA431): precision@{kk} {hits / kk:.3f} (chance {sub_flips / len(rows):.3f}) on "
              f"{len(rows)} training images, {lp.get('epochs')} epochs, out-of-fold accuracy "
              f"{lp.get('accuracy', float('nan')):.3f}, {lp.get('seconds')} s; cleanlab flagged "
              f"{len(pr['ranked'])}")
    elif probe:
        print("labels probe (DSA431):", ctx.sections.get("content", {}).get("label_probe"))


def cost(cifar: Path | None, covid: Path | None, n: int, rounds: int = 3) -> None:
    """Per-file index work with and without the content properties, alternating rounds: in the
    worker (the colour thumbnail of every image, the grey statistics of images larger than 32x32)
    and in hashing.complete (the grey statistics of 32x32 images and the colour statistics of all,
    over all files at once), per file."""
    from dsaudit.content import properties
    from dsaudit.index import hashing, records

    stubs = {"grey_of": lambda *a: np.zeros(len(properties.GREY)),
             "colour_thumb": lambda *a: np.zeros((8, 8, 3), np.uint8),
             "colour_thumb_bytes": lambda *a: bytes(192)}
    real = {name: getattr(properties, name) for name in stubs}
    sets = []
    if cifar:
        sets.append(("CIFAR-10", sorted(cifar.glob("*/*.jpg"))[::max(1, 50000 // n)][:n]))
    if covid:
        sets.append(("COVID-CT", sorted(p for p in covid.glob("*/*") if p.suffix.lower() in (".png", ".jpg"))))
    for name, files in sets:
        tasks = [(str(f), f.suffix.lower().lstrip("."), 89_478_485) for f in files]
        for t in tasks[:50]:
            records.analyse_file(t)   # warm the page cache and the imports
        times: dict[str, list[float]] = {"with": [], "without": [], "bulk": []}
        for _ in range(rounds):
            for mode in ("without", "with"):
                for attr, stub in stubs.items():
                    setattr(properties, attr, real[attr] if mode == "with" else stub)
                t0 = time.perf_counter()
                recs = [records.analyse_file(t) for t in tasks]
                times[mode].append((time.perf_counter() - t0) / len(tasks))
            feats = hashing.stack_features([r["features"] for r in recs])
            deferred = np.flatnonzero(feats["deferred"][:, 0]) if "deferred" in feats else np.zeros(0, int)
            t0 = time.perf_counter()
            if len(deferred):
                properties.grey_stats(feats["thumb"][deferred])
            properties.colour_stats(feats["colour"])
            times["bulk"].append((time.perf_counter() - t0) / len(tasks))
        w, wo, bulk = min(times["with"]), min(times["without"]), min(times["bulk"])
        added = w - wo + bulk
        print(f"cost {name}: {len(tasks)} files ({len(deferred)} measured in bulk), per file {wo * 1e6:.0f} us "
              f"without the properties, {w * 1e6:.0f} us with them in the worker + {bulk * 1e6:.1f} us in "
              f"hashing.complete: +{added * 1e6:.0f} us, +{added / wo:.1%}; best of {rounds} rounds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cifar", default=None, help="folder of <class>/*.jpg (default: unpack the shared tarball)")
    ap.add_argument("--covid", default=str(SHARED / "covid-ct"))
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--work", default="/tmp/dsaudit-content-bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe", action="store_true", help="also run DSA431 (TensorFlow, cleanlab)")
    ap.add_argument("--label-budget", type=float, default=None,
                    help="content.label_probe_budget for DSA431 (default: the config default)")
    ap.add_argument("--cost", type=int, default=0, help="time the per-file cost on this many CIFAR files")
    ap.add_argument("--only", choices=("cifar", "covid"), default=None)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cifar = cifar_source(args.cifar, work) if args.only != "covid" else None
    covid = Path(args.covid) if args.only != "cifar" and (Path(args.covid) / "CT_COVID").is_dir() else None
    if cifar is None and covid is None:
        print("no data: ../shared/datasets is absent and no --cifar/--covid folder was given; skipping")
        return
    if args.cost:
        cost(cifar, covid, args.cost)
        return
    if cifar is not None:
        files = {c.name: sorted(c.glob("*.jpg"))[:int(args.per_class * 1.4)] for c in sorted(cifar.iterdir())
                 if c.is_dir()}
        root, truth = build_set("cifar", files, work, (0.4 / 1.4 / 2, 0.4 / 1.4 / 2), "PNG", args.seed)
        evaluate("CIFAR-10", root, truth, args.probe, args.seed, args.label_budget)
    if covid is not None:
        files = {c.name: sorted(p for p in c.iterdir() if p.suffix.lower() in (".png", ".jpg"))
                 for c in sorted(covid.iterdir()) if c.is_dir()}
        root, truth = build_set("covid-ct", files, work, (0.15, 0.15), "JPEG", args.seed)
        evaluate("COVID-CT", root, truth, args.probe, args.seed, args.label_budget)


if __name__ == "__main__":
    main()
