"""Side-by-side benchmark of cross-split duplicate detection: dsaudit vs imagededup, cleanvision, fastdup.

What users judge: which planted cross-split duplicates each tool finds (recall per transform), what it
reports that was not planted (extra train-val pairs, clean validation images flagged), and how long
it takes (wall time of the whole command, same machine, run one after the other).

Datasets are built into --work (default /tmp/dsaudit_compare) from real images, with fixed seeds:

* cifar:  32x32 RGB patches of scikit-learn's two bundled photos (tests/imagery.py real_patches,
          stride 16, so neighbouring patches overlap by half: similar-looking but not duplicates),
          10 classes assigned at random;
* ct:     the COVID-CT slices of ../shared/datasets/covid-ct, resized (max side 160, greyscale);
          the clean validation images come from other papers/figures than the train images;
* digits: sklearn's 8x8 handwritten digits upscaled to 64x64 (bilinear), classes = digits.

For each, a sample of train images is copied into val with one transform each (exact copy, JPEG
q60-90, resize 0.5-1.5x, brightness/contrast, hflip, vflip, rot90, crop 5-10%, shift 5-10% with
reflect padding cropped back, rotation 3-10 degrees with reflect padding); the rest of val is clean
(other images). File names are neutral (no hint of the ground truth).

Every tool runs as a subprocess: dsaudit with this interpreter (`python -m dsaudit.cli scan`), the
others with the interpreter of a separate virtual environment (--venv, default /tmp/cmpenv) made with
`python -m venv /tmp/cmpenv && /tmp/cmpenv/bin/pip install torch==2.13.0 cleanvision imagededup fastdup`.

A tool's output is turned into groups of files it calls duplicates (a pair is a group of two). A
planted pair is found when both files are in one reported group; "extra" pairs are the train x val
pairs inside reported groups that were not planted; a clean val image is "flagged" when it shares a
reported group with a train image. deepchecks 0.19 is left out: its vision suite has no duplicate or
leakage check. Results and the exact figures: docs/comparison.md.

    python benchmarks/compare_tools.py            # full run, < 10 min on 2 cores
    python benchmarks/compare_tools.py --quick    # small run
    python benchmarks/compare_tools.py --inspect 6  # also save side-by-side PNGs of extra pairs
    python benchmarks/compare_tools.py --no-build --tools dsaudit --name rerun  # dsaudit again, same data
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from itertools import product
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
COVID_CT = REPO.parent / "shared" / "datasets" / "covid-ct"
TRANSFORMS = ("exact", "jpeg", "resize", "bright_contrast", "hflip", "vflip", "rot90", "crop", "shift",
              "rotate_small")
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


# ----------------------------------------------------------------------------------------------
# Transforms (PIL in, PIL out, all randomness from rng)
# ----------------------------------------------------------------------------------------------

def _two_sided(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A factor in [1/hi..1/lo]-ish: uniform in [lo, hi] above or below 1 with equal chance."""
    f = rng.uniform(lo, hi)
    return 1 + f if rng.random() < 0.5 else 1 - f


def _reflect_pad(img: Image.Image, pad: int) -> Image.Image:
    a = np.asarray(img)
    widths = ((pad, pad), (pad, pad)) + (((0, 0),) if a.ndim == 3 else ())
    return Image.fromarray(np.pad(a, widths, mode="reflect"))


def transform(name: str, img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str, str]:
    """Return (image, file format, description) for transform `name` (not 'exact')."""
    w, h = img.size
    if name == "jpeg":
        q = int(rng.integers(60, 91))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=q)
        buf.seek(0)
        return Image.open(buf).copy(), f"JPEG:{q}", f"q={q}"
    if name == "resize":
        f = rng.choice([rng.uniform(0.5, 0.85), rng.uniform(1.15, 1.5)])
        size = (max(8, round(w * f)), max(8, round(h * f)))
        return img.resize(size, Image.Resampling.BICUBIC), "PNG", f"x{f:.2f}"
    if name == "bright_contrast":
        b, c = _two_sided(rng, 0.1, 0.3), _two_sided(rng, 0.1, 0.3)
        out = ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(b)).enhance(c)
        return out, "PNG", f"b={b:.2f} c={c:.2f}"
    if name == "hflip":
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG", ""
    if name == "vflip":
        return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM), "PNG", ""
    if name == "rot90":
        return img.transpose(Image.Transpose.ROTATE_90), "PNG", ""
    if name == "crop":
        f = rng.uniform(0.05, 0.10)
        cw, ch = round(w * (1 - f)), round(h * (1 - f))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BICUBIC)
        return out, "PNG", f"{f:.0%}"
    if name == "shift":
        fx, fy = rng.uniform(0.05, 0.10) * rng.choice([-1, 1]), rng.uniform(0.05, 0.10) * rng.choice([-1, 1])
        dx, dy = round(fx * w), round(fy * h)
        pad = max(abs(dx), abs(dy)) + 1
        big = _reflect_pad(img, pad)
        out = big.crop((pad - dx, pad - dy, pad - dx + w, pad - dy + h))
        return out, "PNG", f"dx={dx} dy={dy}"
    if name == "rotate_small":
        ang = rng.uniform(3, 10) * rng.choice([-1, 1])
        pad = max(w, h) // 4 + 2
        big = _reflect_pad(img, pad).rotate(ang, resample=Image.Resampling.BILINEAR)
        out = big.crop((pad, pad, pad + w, pad + h))
        return out, "PNG", f"{ang:+.1f}deg"
    raise ValueError(name)


# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------

def _save(img: Image.Image, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt.startswith("JPEG"):
        img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode).save(
            path, format="JPEG", quality=int(fmt.split(":")[1]))
    else:
        img.save(path, format="PNG")


def build_dataset(name: str, images: list[Image.Image], labels: list[str], groups: list[str],
                  n_train: int, n_clean: int, per_transform: int, root: Path, seed: int) -> dict:
    """Write ROOT/{train,val}/<label>/ and return the ground truth.

    Clean val images are whole groups not used in train (groups = same paper/figure for CT)."""
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    order = [by_group[g] for g in rng.permutation(sorted(by_group))]
    train_idx, clean_idx = [], []
    for members in order:  # fill clean val first with whole groups, then train
        (clean_idx if len(clean_idx) < n_clean else train_idx).extend(members)
    train_idx, clean_idx = train_idx[:n_train], clean_idx[:n_clean]
    n_val = n_clean + per_transform * len(TRANSFORMS)
    # neutral, shuffled file numbers
    train_names = rng.permutation(len(train_idx))
    val_names = iter(rng.permutation(n_val))
    files: dict[str, dict] = {}
    train_rel = {}
    for k, i in enumerate(train_idx):
        rel = f"train/{labels[i]}/t{train_names[k]:05d}.png"
        _save(images[i], root / rel, "PNG")
        files[rel] = {"split": "train", "src": i}
        train_rel[i] = rel
    clean = []
    for i in clean_idx:
        rel = f"val/{labels[i]}/v{next(val_names):05d}.png"
        _save(images[i], root / rel, "PNG")
        files[rel] = {"split": "val", "src": i}
        clean.append(rel)
    picks = rng.choice(len(train_idx), size=per_transform * len(TRANSFORMS), replace=False)
    planted = []
    for t, tname in enumerate(TRANSFORMS):
        for j in picks[t * per_transform:(t + 1) * per_transform]:
            i = train_idx[j]
            num = next(val_names)
            if tname == "exact":
                rel = f"val/{labels[i]}/v{num:05d}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / train_rel[i], root / rel)
                desc = ""
            else:
                out, fmt, desc = transform(tname, images[i], rng)
                rel = f"val/{labels[i]}/v{num:05d}{'.jpg' if fmt.startswith('JPEG') else '.png'}"
                _save(out, root / rel, fmt)
            files[rel] = {"split": "val", "src": i}
            planted.append({"train": train_rel[i], "val": rel, "transform": tname, "detail": desc})
    truth = {"dataset": name, "root": str(root), "n_train": len(train_idx), "n_clean_val": len(clean),
             "n_planted": len(planted), "planted": planted, "clean_val": clean,
             "train": sorted(train_rel.values())}
    (root.parent / f"{name}_truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def cifar_images(n: int, seed: int) -> tuple[list[Image.Image], list[str], list[str]]:
    sys.path.insert(0, str(REPO / "tests"))
    from imagery import real_patches

    patches = real_patches(n, size=32, seed=seed, stride=16)
    rng = np.random.default_rng(seed + 1)
    labels = [f"c{k}" for k in rng.integers(0, 10, size=n)]
    return [Image.fromarray(p) for p in patches], labels, [str(i) for i in range(n)]


def ct_group(stem: str) -> str:
    """Images cut from one figure share the part before '%'; COVID papers share the id before '-p'."""
    g = stem.split("%")[0]
    return re.split(r"-p\d", g)[0]


def ct_images(limit: int | None, seed: int) -> tuple[list[Image.Image], list[str], list[str]]:
    if not COVID_CT.is_dir():
        raise FileNotFoundError(COVID_CT)
    paths = sorted(p for p in COVID_CT.rglob("*") if p.suffix.lower() in IMAGE_EXT)
    if limit:
        rng = np.random.default_rng(seed)
        paths = [paths[i] for i in sorted(rng.choice(len(paths), size=limit, replace=False))]
    imgs, labels, groups = [], [], []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("L")
            im.thumbnail((160, 160), Image.Resampling.LANCZOS)
            imgs.append(im.copy())
        labels.append(p.parent.name)
        groups.append(p.parent.name + "/" + ct_group(p.stem))
    return imgs, labels, groups


def digit_images(seed: int) -> tuple[list[Image.Image], list[str], list[str]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = [Image.fromarray((im * (255 / 16)).round().astype(np.uint8)).resize((64, 64), Image.Resampling.BILINEAR)
            for im in d.images]
    return imgs, [f"d{t}" for t in d.target], [str(i) for i in range(len(imgs))]


SIZES = {  # name: (n_train, n_clean_val, per_transform) full / quick
    "full": {"cifar": (1100, 400, 25), "ct": (560, 150, 12), "digits": (1200, 550, 25)},
    "quick": {"cifar": (250, 80, 6), "ct": (200, 60, 5), "digits": (300, 120, 6)},
}


def make_datasets(names: list[str], work: Path, quick: bool, seed: int) -> dict[str, dict]:
    sizes = SIZES["quick" if quick else "full"]
    out = {}
    for name in names:
        n_train, n_clean, per = sizes[name]
        if name == "cifar":
            imgs, labels, groups = cifar_images(n_train + n_clean, seed)
        elif name == "ct":
            if not COVID_CT.is_dir():
                print(f"skip ct: {COVID_CT} not found")
                continue
            imgs, labels, groups = ct_images(n_train + n_clean + 40 if quick else None, seed)
        else:
            imgs, labels, groups = digit_images(seed)
        out[name] = build_dataset(name, imgs, labels, groups, n_train, n_clean, per, work / name, seed)
    return out


# ----------------------------------------------------------------------------------------------
# Tool runners (each writes {"groups": [[rel, ...], ...], ...} as JSON)
# ----------------------------------------------------------------------------------------------

IMAGEDEDUP_RUNNER = r'''
import importlib.util, json, os, sys, types
root, out, method, thr = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
note = ""
try:  # the documented import; imports torchvision for the CNN method
    from imagededup import methods as _m
except Exception as e:  # torchvision broken beside this torch: load the hashing module alone
    note = "from imagededup.methods import failed (%s: %s); loaded imagededup.methods.hashing directly" % (
        type(e).__name__, str(e).splitlines()[0][:120])
    base = os.path.dirname(importlib.util.find_spec("imagededup").origin)
    for k in [k for k in sys.modules if k.startswith(("imagededup.methods", "imagededup.utils"))]:
        del sys.modules[k]
    for sub in ("methods", "utils"):
        m = types.ModuleType("imagededup." + sub)
        m.__path__ = [os.path.join(base, sub)]
        sys.modules["imagededup." + sub] = m
from imagededup.methods import hashing
if __name__ == "__main__":
    hasher = getattr(hashing, method)(verbose=False)
    dups = hasher.find_duplicates(image_dir=root, max_distance_threshold=thr, recursive=True)
    groups = [[k] + list(v) for k, v in dups.items() if v]
    json.dump({"groups": groups, "note": note}, open(out, "w"))
'''

CLEANVISION_RUNNER = r'''
import json, os, sys
from cleanvision import Imagelab
root, out = sys.argv[1], sys.argv[2]
params = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
if __name__ == "__main__":
    lab = Imagelab(data_path=root)
    lab.find_issues({"exact_duplicates": params.get("exact_duplicates", {}),
                     "near_duplicates": params.get("near_duplicates", {})}, verbose=False)
    groups = []
    for t in ("exact_duplicates", "near_duplicates"):
        for s in lab.info[t]["sets"]:
            groups.append([os.path.relpath(p, root) for p in s])
    json.dump({"groups": groups, "note": ""}, open(out, "w"))
'''

FASTDUP_RUNNER = r'''
import json, os, sys, shutil
os.environ.setdefault("SENTRY_OPT_OUT", "1")
import fastdup
root, out, work = sys.argv[1], sys.argv[2], sys.argv[3]
kw = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
if __name__ == "__main__":
    shutil.rmtree(work, ignore_errors=True)
    fd = fastdup.create(work_dir=work, input_dir=root)
    fd.run(overwrite=True, print_summary=False, verbose=False, **kw)
    def rel(p):
        return os.path.relpath(os.path.join(root, p) if not os.path.isabs(p) else p, root)
    comps, sims = [], []
    cc, _ = fd.connected_components()
    if cc is not None and len(cc):
        for _, g in cc.groupby("component_id"):
            if len(g) > 1:
                comps.append([rel(p) for p in g["filename"]])
    sim = fd.similarity()
    if sim is not None and len(sim):
        for a, b in zip(sim["filename_from"], sim["filename_to"]):
            sims.append([rel(a), rel(b)])
    json.dump({"groups_components": comps, "groups_similarity": sims, "note": ""}, open(out, "w"))
'''


def _run(cmd: list[str], env: dict | None = None, timeout: float = 1800) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    return time.perf_counter() - t0, p.returncode, (p.stderr or "")[-3000:] + (p.stdout or "")[-2000:]


DETECTOR_FILES = ("src/dsaudit/index/hashing.py", "src/dsaudit/similarity/neighbors.py",
                  "src/dsaudit/similarity/verify.py", "src/dsaudit/similarity/matching.py",
                  "src/dsaudit/similarity/duplicates.py", "src/dsaudit/similarity/views.py",
                  "src/dsaudit/similarity/ann.py", "src/dsaudit/config.py")


def detector_fingerprint() -> str:
    """Digest of the leakage detector's sources, to tell which version of it a row measured."""
    import hashlib

    h = hashlib.sha256()
    for rel in DETECTOR_FILES:
        f = REPO / rel
        h.update(f.read_bytes() if f.exists() else b"-")
    return h.hexdigest()[:12]


def run_dsaudit(root: Path, out: Path, extra: list[str]) -> dict:
    fp_before = detector_fingerprint()
    rep = out.with_suffix("")
    shutil.rmtree(rep, ignore_errors=True)
    cmd = [sys.executable, "-m", "dsaudit.cli", "scan", str(root), "-f", "json", "-o", str(rep),
           "--no-probe", "--no-cache", "--fail-on", "never", "-q"] + extra
    wall, rc, log = _run(cmd)
    if rc not in (0, 1):
        return {"error": f"exit {rc}: {log[-800:]}", "wall": wall}
    report = json.loads((rep / "report.json").read_text())
    groups, pairs, complete = [], [], True
    for f in report["findings"]:
        if f["check_id"] not in ("DSA201", "DSA202", "DSA203"):
            continue
        groups.append(list(f["paths"]))
        ev = f.get("evidence") or {}
        listed = ev.get("pairs", []) or []
        complete &= len(listed) >= int(ev.get("n_pairs", len(listed)))
        for p in listed:
            pairs.append(dict(p, check_id=f["check_id"]))
    fp = fp_before if fp_before == detector_fingerprint() else fp_before + "+changed-during-run"
    return {"groups": groups, "pairs": pairs, "pairs_complete": complete, "wall": wall,
            "note": f"detector {fp}", "detector": fp, "cmd": " ".join(cmd[1:])}


def run_venv_tool(runner: str, args: list[str], venv: Path, tmp: Path, out: Path, env_extra=None) -> dict:
    script = tmp / f"runner_{abs(hash(runner)) % 10**8}.py"
    script.write_text(runner)
    env = dict(os.environ, **(env_extra or {}))
    env.pop("PYTHONPATH", None)
    out.unlink(missing_ok=True)
    wall, rc, log = _run([str(venv / "bin" / "python"), str(script)] + args, env=env)
    if rc != 0 or not out.exists():
        return {"error": f"exit {rc}: {log[-1500:]}", "wall": wall}
    res = json.loads(out.read_text())
    res["wall"] = wall
    return res


def tool_configs(venv: Path, tuned: bool) -> list[dict]:
    cfgs = [
        {"tool": "dsaudit", "setting": "default (all checks)", "kind": "dsaudit", "extra": []},
        {"tool": "dsaudit", "setting": "leakage checks only (--select DSA201,...,DSA204)", "kind": "dsaudit",
         "extra": ["--select", "DSA201,DSA202,DSA203,DSA204"]},
        {"tool": "imagededup", "setting": "PHash, max_distance_threshold=10 (default)", "kind": "imagededup",
         "method": "PHash", "thr": 10},
        {"tool": "cleanvision", "setting": "exact_duplicates + near_duplicates (default)", "kind": "cleanvision",
         "params": {}},
        {"tool": "fastdup", "setting": "connected components, ccthreshold=0.96 (default)", "kind": "fastdup",
         "mode": "components", "kw": {}},
        {"tool": "fastdup", "setting": "similarity pairs, threshold=0.9 (default; same run)", "kind": "fastdup",
         "mode": "similarity", "kw": {}},
    ]
    if tuned:
        cfgs += [
            {"tool": "imagededup", "setting": "TUNED: PHash, max_distance_threshold=16", "kind": "imagededup",
             "method": "PHash", "thr": 16},
            {"tool": "fastdup", "setting": "TUNED: connected components, ccthreshold=0.90", "kind": "fastdup",
             "mode": "components", "kw": {"ccthreshold": 0.90}},
            {"tool": "imagededup", "setting": "TUNED: PHash, max_distance_threshold=6", "kind": "imagededup",
             "method": "PHash", "thr": 6},
            {"tool": "fastdup", "setting": "TUNED: connected components, ccthreshold=0.98", "kind": "fastdup",
             "mode": "components", "kw": {"ccthreshold": 0.98}},
        ]
    return cfgs


def run_tool(cfg: dict, root: Path, venv: Path, tmp: Path, idx: int) -> dict:
    out = tmp / f"out_{root.name}_{idx}.json"
    if cfg["kind"] == "dsaudit":
        return run_dsaudit(root, out, cfg["extra"])
    if cfg["kind"] == "imagededup":
        return run_venv_tool(IMAGEDEDUP_RUNNER, [str(root), str(out), cfg["method"], str(cfg["thr"])], venv, tmp, out)
    if cfg["kind"] == "cleanvision":
        return run_venv_tool(CLEANVISION_RUNNER, [str(root), str(out), json.dumps(cfg["params"])], venv, tmp, out)
    if cfg["kind"] == "fastdup":
        work = tmp / f"fastdup_{root.name}_{idx}"
        return run_venv_tool(FASTDUP_RUNNER, [str(root), str(out), str(work), json.dumps(cfg["kw"])],
                             venv, tmp, out, env_extra={"SENTRY_OPT_OUT": "1"})
    raise ValueError(cfg["kind"])


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------

def _norm(p: str) -> str:
    return p.replace(os.sep, "/").lstrip("./")


def score(truth: dict, res: dict) -> dict:
    split = {}
    for rel in truth["train"]:
        split[rel] = "train"
    planted = {(p["train"], p["val"]): p["transform"] for p in truth["planted"]}
    for p in truth["planted"]:
        split[p["val"]] = "val"
    clean = set(truth["clean_val"])
    for rel in clean:
        split[rel] = "val"
    cross: set[tuple[str, str]] = set()
    unknown = 0
    for g in res.get("groups", []):
        g = [_norm(x) for x in g]
        unknown += sum(1 for x in g if x not in split)
        tr = [x for x in g if split.get(x) == "train"]
        va = [x for x in g if split.get(x) == "val"]
        cross.update(product(tr, va))
    found = Counter(t for pair, t in planted.items() if pair in cross)
    total = Counter(planted.values())
    extra = cross - set(planted)
    flagged_clean = {v for _, v in extra if v in clean}
    planted_val = {v for _, v in planted}
    return {
        "recall": {t: found[t] / total[t] for t in TRANSFORMS if total[t]},
        "found": sum(found.values()), "planted": len(planted),
        "extra_pairs": len(extra),
        "extra_pairs_clean_val": sum(1 for _, v in extra if v in clean),
        "extra_pairs_planted_val": sum(1 for _, v in extra if v in planted_val),
        "flagged_clean": len(flagged_clean), "n_clean": len(clean),
        "flagged_clean_share": len(flagged_clean) / max(1, len(clean)),
        "unknown_paths": unknown,
        "extra_examples": sorted(extra)[:200],
    }


def pair_info(res: dict) -> dict[frozenset, dict]:
    """dsaudit's evidence per pair (similarity, distance, transform), keyed by the unordered pair."""
    info = {}
    for p in res.get("pairs", []):
        info[frozenset((_norm(p["a"]), _norm(p["b"])))] = p
    return info


def save_pair_png(root: Path, a: str, b: str, path: Path, caption: str = "") -> None:
    ims = []
    for rel in (a, b):
        im = Image.open(root / rel).convert("RGB")
        scale = max(1, 128 // max(im.size))
        im = im.resize((im.size[0] * scale, im.size[1] * scale), Image.Resampling.NEAREST)
        ims.append(im)
    w = sum(i.size[0] for i in ims) + 10
    h = max(i.size[1] for i in ims)
    canvas = Image.new("RGB", (w, h), (255, 0, 255))
    canvas.paste(ims[0], (0, 0))
    canvas.paste(ims[1], (ims[0].size[0] + 10, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


# ----------------------------------------------------------------------------------------------
# Versions, probing which tools can run here
# ----------------------------------------------------------------------------------------------

def versions(venv: Path) -> dict:
    code = ("import importlib.metadata as m, json\n"
            "out = {}\n"
            "for d in ('cleanvision','imagededup','fastdup','torch','torchvision','deepchecks','numpy','pillow'):\n"
            "    try: out[d] = m.version(d)\n"
            "    except Exception: out[d] = None\n"
            "print(json.dumps(out))")
    v = {}
    try:
        p = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=60)
        v = json.loads(p.stdout)
    except Exception as e:  # noqa: BLE001
        v = {"error": str(e)}
    import dsaudit
    v["dsaudit"] = getattr(dsaudit, "__version__", "?")
    v["python"] = platform.python_version()
    return v


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

SHORT = {"exact": "exact", "jpeg": "jpeg", "resize": "resize", "bright_contrast": "b/c", "hflip": "hflip",
         "vflip": "vflip", "rot90": "rot90", "crop": "crop", "shift": "shift", "rotate_small": "rot3-10"}


def markdown(results: list[dict], datasets: dict) -> str:
    lines = []
    for name, truth in datasets.items():
        rows = [r for r in results if r["dataset"] == name]
        lines.append(f"### {name}: {truth['n_train']} train, {truth['n_planted']} planted val copies "
                     f"({truth['n_planted'] // len(TRANSFORMS)} per transform), {truth['n_clean_val']} clean val\n")
        head = ["tool", "setting", "recall"] + [SHORT[t] for t in TRANSFORMS] + \
               ["extra pairs", "clean val flagged", "wall s", "x dsaudit"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        base = next((r["wall"] for r in rows if r["tool"] == "dsaudit" and r["setting"].startswith("default")
                     and "wall" in r), None)
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['tool']} | {r['setting']} | could not run: {r['error'][:100]} |")
                continue
            s = r["score"]
            cells = [r["tool"], r["setting"], f"{s['found']}/{s['planted']}"]
            cells += [f"{s['recall'][t]:.0%}" for t in TRANSFORMS]
            cells += [str(s["extra_pairs"]), f"{s['flagged_clean']}/{s['n_clean']} ({s['flagged_clean_share']:.1%})",
                      "shared" if r.get("reused") else f"{r['wall']:.1f}",
                      "" if r.get("reused") or not base else f"{r['wall'] / base:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        fps = sorted({r["detector"] for r in rows if r.get("detector")})
        if fps:
            lines.append(f"dsaudit leakage detector sources: {', '.join(fps)}\n")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small datasets")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dsaudit_compare")
    ap.add_argument("--venv", type=Path, default=Path("/tmp/cmpenv"), help="venv with the other tools")
    ap.add_argument("--datasets", default="cifar,ct,digits")
    ap.add_argument("--tools", default="dsaudit,imagededup,cleanvision,fastdup")
    ap.add_argument("--tuned", action="store_true",
                    help="also run a looser and a stricter setting of imagededup and fastdup")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inspect", type=int, default=0, help="save N side-by-side PNGs of extra pairs per tool")
    ap.add_argument("--no-build", action="store_true", help="reuse the datasets already in --work")
    ap.add_argument("--name", default="results", help="write NAME.json and NAME.md in --work")
    args = ap.parse_args()

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.datasets.split(",") if n]
    t0 = time.perf_counter()
    if args.no_build:
        datasets = {n: json.loads((work / f"{n}_truth.json").read_text()) for n in names
                    if (work / f"{n}_truth.json").exists()}
    else:
        datasets = make_datasets(names, work, args.quick, args.seed)
    print(f"datasets built in {time.perf_counter() - t0:.1f}s: "
          + ", ".join(f"{k}={v['n_train'] + v['n_planted'] + v['n_clean_val']} images" for k, v in datasets.items()))
    tools = set(args.tools.split(","))
    cfgs = [c for c in tool_configs(args.venv, args.tuned) if c["tool"] in tools]
    tmp = work / "runs"
    tmp.mkdir(exist_ok=True)
    results = []
    for name, truth in datasets.items():
        root = Path(truth["root"])
        fastdup_runs: dict[str, dict] = {}  # one fastdup run gives both components and similarity pairs
        for i, cfg in enumerate(cfgs):
            if cfg["kind"] == "fastdup":
                key = json.dumps(cfg["kw"], sort_keys=True)
                reused = key in fastdup_runs
                if not reused:
                    fastdup_runs[key] = run_tool(cfg, root, args.venv, tmp, i)
                res = dict(fastdup_runs[key], reused=reused)
                if "error" not in res:
                    res["groups"] = res["groups_" + cfg["mode"]]
            else:
                res = run_tool(cfg, root, args.venv, tmp, i)
            row = {"dataset": name, "tool": cfg["tool"], "setting": cfg["setting"], "wall": res.get("wall"),
                   "reused": res.get("reused", False), "detector": res.get("detector")}
            if "error" in res:
                row["error"] = res["error"]
                print(f"[{name}] {cfg['tool']} / {cfg['setting']}: ERROR {res['error'][:300]}")
            else:
                row["score"] = score(truth, res)
                row["note"] = res.get("note", "")
                if cfg["kind"] == "dsaudit":
                    info = pair_info(res)
                    row["extra_details"] = [
                        dict(train=a, val=b, **{k: info.get(frozenset((a, b)), {}).get(k)
                                                for k in ("check_id", "kind", "distance", "similarity", "transform")})
                        for a, b in row["score"]["extra_examples"][:50]]
                    missed = []
                    found_pairs = set()
                    for g in res["groups"]:
                        g = [_norm(x) for x in g]
                        found_pairs.update((a, b) for a in g for b in g)
                    for p in truth["planted"]:
                        if (p["train"], p["val"]) not in found_pairs:
                            missed.append(p)
                    row["missed"] = missed
                s = row["score"]
                print(f"[{name}] {cfg['tool']} / {cfg['setting']}: found {s['found']}/{s['planted']}, "
                      f"extra {s['extra_pairs']}, clean flagged {s['flagged_clean']}/{s['n_clean']}, "
                      f"{res['wall']:.1f}s {res.get('note', '')}", flush=True)
                if args.inspect:
                    tag = re.sub(r"[^a-z0-9]+", "_", (cfg["tool"] + "_" + cfg["setting"]).lower())[:40]
                    for k, (a, b) in enumerate(s["extra_examples"][:args.inspect]):
                        save_pair_png(root, a, b, work / "inspect" / name / f"{tag}_{k}.png")
            results.append(row)
            if cfg["kind"] == "dsaudit" and "error" not in res and cfg["setting"].startswith("default"):
                # the same run read pair by pair (evidence["pairs"]) instead of by finding group
                pres = {"groups": [[p["a"], p["b"]] for p in res["pairs"]]}
                results.append({"dataset": name, "tool": "dsaudit", "reused": True, "wall": res["wall"],
                                "setting": "default, pairs in evidence only" + ("" if res.get("pairs_complete")
                                                                                else " (evidence truncated)"),
                                "score": score(truth, pres)})
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
            "machine": platform.platform(), "quick": args.quick, "seed": args.seed,
            "command": " ".join([Path(sys.executable).name] + sys.argv), "versions": versions(args.venv),
            "git": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True).stdout.strip()}
    (work / f"{args.name}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    md = markdown(results, datasets)
    (work / f"{args.name}.md").write_text(md)
    print(json.dumps(meta, indent=1))
    print(md)
    print(f"total {time.perf_counter() - t0:.0f}s; results in {work / (args.name + '.json')}")


if __name__ == "__main__":
    main()
