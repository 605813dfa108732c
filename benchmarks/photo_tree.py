"""Real-photo benchmark trees from CIFAR-10 train (shared by scan_speed.py and scale_1m.py).

The photos come from `../shared/datasets/cifar10-train/cifar10-train.tar.gz` (unpacked into a
temporary folder) or from an unpacked copy given by path (`train/<class>/NNNN.jpg` or the
`<class>/NNNN.jpg` folder itself). Nothing is written next to the photos: trees are built under
the caller's root. `cifar_photos` returns None when neither exists, so benchmarks skip cleanly.

A tree is the photos split with a fixed seed into train/val class folders, plus planted copies of
train photos made the way augmentation pipelines make them (random crop, flip, colour jitter,
JPEG re-encoding, at one of several sizes), written into val (a cross-split leak) or into train
next to their source (a copy inside the split). `copies.csv` in the tree's parent lists every
planted copy with its source, so a benchmark can count how many were found.

`measured_scan` runs one cold or warm `dsaudit scan` (every check but the probe) in a child
process, so that its wall time and peak memory are its own, and returns what the benchmarks print:
the timings, the leakage section, the budget notes, every matched pair and the duplicate groups,
and the peak memory per phase of the scan (index pass stages, each analysis, the checks).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10-train" / "cifar10-train.tar.gz"


def cifar_photos(source: str | os.PathLike | None, scratch: Path) -> Path | None:
    """The folder holding the 10 CIFAR-10 class folders: `source` itself (a folder with class
    folders, or with train/<class>), or the archive `source` (default: the shared one) unpacked
    once into `scratch`. None when there is nothing to read."""
    src = Path(source) if source else CIFAR_ARCHIVE
    if src.is_dir():
        return src / "train" if (src / "train").is_dir() else src
    if not src.is_file():
        return None
    target = scratch / "cifar10-unpacked"
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(src) as tar:
            tar.extractall(target, filter="data")
        (target / ".complete").write_text("ok")
    return target / "train"


def list_photos(folder: Path) -> list[tuple[str, Path]]:
    """(class, path) of every photo, sorted (the archive's order)."""
    return [(c.name, p) for c in sorted(folder.iterdir()) if c.is_dir() for p in sorted(c.glob("*.jpg"))]


def augment(img: Image.Image, rng: np.random.Generator, size: int) -> tuple[Image.Image, int]:
    """A copy as augmentation pipelines make it: a random crop of 80-95% of each side (at a
    random place), a horizontal flip half of the time, brightness/contrast/saturation jitter of
    up to +-15%, resized to `size` px; returns it with the JPEG quality to save it at (70-95)."""
    w, h = img.size
    fw, fh = rng.uniform(0.8, 0.95, size=2)
    cw, ch = max(8, int(round(w * fw))), max(8, int(round(h * fh)))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = img.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.uniform() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        out = enhance(out).enhance(float(rng.uniform(0.85, 1.15)))
    out = out.resize((size, size), Image.Resampling.BILINEAR)
    return out, int(rng.integers(70, 96))


def write_photo_tree(root: Path, photos: Path, n: int, seed: int = 0, val_share: float = 1 / 6,
                     copy_share: float = 0.5, sizes: tuple[int, ...] = (32,)) -> list[tuple[str, str]]:
    """Write (once) ROOT/{train,val}/<class>/ with n images: the photos (all of them, or n of them
    chosen with `seed` when n is smaller) split with `seed` into train/val, and planted copies of
    train photos filling up to n (at least 2% of n). Copies go to val or, for `copy_share` of
    them, into train beside their source; each is `augment`ed at a size drawn from `sizes`.
    Returns the (copy, source) relative paths, also kept in ROOT.parent/copies-<name>.csv."""
    listing = Path(str(root) + ".copies.csv")
    marker = root / ".complete"
    if marker.exists() and listing.exists():
        with open(listing, newline="") as fh:
            return [(r["copy"], r["source"]) for r in csv.DictReader(fh)]
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    all_photos = list_photos(photos)
    n_copies = max(n - len(all_photos), n // 50)
    n_orig = n - n_copies
    chosen = np.sort(rng.choice(len(all_photos), size=n_orig, replace=False)) if n_orig < len(all_photos) \
        else np.arange(len(all_photos))
    is_val = rng.uniform(size=len(chosen)) < val_share
    train_items: list[tuple[str, Path, str]] = []
    for k, v in zip(chosen, is_val):
        label, path = all_photos[int(k)]
        split = "val" if v else "train"
        rel = f"{split}/{label}/{path.name}"
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        if not v:
            train_items.append((label, dest, rel))
    pairs: list[tuple[str, str]] = []
    src_idx = rng.integers(0, len(train_items), size=n_copies)
    for i, s in enumerate(src_idx):
        label, src_path, src_rel = train_items[int(s)]
        split = "train" if rng.uniform() < copy_share else "val"
        with Image.open(src_path) as im:
            im = im.convert("RGB")
            copy, quality = augment(im, rng, int(sizes[int(rng.integers(0, len(sizes)))]))
        rel = f"{split}/{label}/copy{i:07d}.jpg"
        buf = io.BytesIO()
        copy.save(buf, format="JPEG", quality=quality)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(buf.getvalue())
        pairs.append((rel, src_rel))
    with open(listing, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["copy", "source"])
        w.writerows(pairs)
    marker.write_text("ok")
    return pairs


def copies_found(pairs: list[tuple[str, str]], matched: set[tuple[str, str]]) -> dict[str, float]:
    """Share of planted copies matched to their source, across splits and inside train."""
    out: dict[str, float] = {}
    for name, prefix in (("into val", "val/"), ("inside train", "train/")):
        sel = [(c, s) for c, s in pairs if c.startswith(prefix)]
        hit = sum(1 for c, s in sel if (c, s) in matched or (s, c) in matched)
        out[name] = hit / len(sel) if sel else float("nan")
        out[name + " (n)"] = len(sel)
    return out


def scratch_dir(name: str) -> Path:
    d = Path(tempfile.gettempdir()) / name
    d.mkdir(parents=True, exist_ok=True)
    return d


# ------------------------------------------------------------------------------------------
# One scan in a child process: wall time, peak memory (overall and per phase), what it found
# ------------------------------------------------------------------------------------------

def run_measured(cmd: list[str], env: dict | None = None, quiet: bool = False) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GB of the largest process of the run, stdout) of a child."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.DEVNULL if quiet else None)
    stdout = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd[:4]} failed with exit {proc.returncode}")
    return time.perf_counter() - t, usage.ru_maxrss / 1024 ** 2, stdout


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PhasePeaks:
    """Samples this process's RSS every `every` seconds and keeps the peak of each phase (the
    scan's status lines name the analyses and checks; the index pass is the first phase)."""

    def __init__(self, every: float = 0.1):
        self.phase, self.peaks, self.samples = "index", {}, []
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.sample()

    def sample(self) -> None:
        rss = _rss_bytes()
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
        self.samples.append((round(time.perf_counter() - self.t0, 2), rss))

    def status(self, line: str) -> None:
        self.sample()
        self.phase = line if line.startswith("analysis") else "checks"

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.sample()
        return {k: round(v / 1024 ** 3, 3) for k, v in self.peaks.items()}


def index_stage_peaks(samples: list[tuple[float, int]], timings: dict[str, float]) -> dict[str, float]:
    """Peak RSS (GB) during each stage of the index pass, from the RSS samples (seconds since the
    scan began) and the stages' durations, which run one after another in this order."""
    out, t = {}, 0.0
    for stage in ("stat", "cache_read", "decode", "cache_write", "assemble", "finalize"):
        end = t + float(timings.get(stage, 0.0))
        inside = [rss for s, rss in samples if t <= s <= end + 0.1]
        if inside:
            out[stage] = round(max(inside) / 1024 ** 3, 3)
        t = end
    return out


def scan_child(root: Path, cache: Path, out: Path, jobs: int, engine: str = "local", dump: str = "") -> None:
    """The scan, in this (child) process: writes its seconds, timings, leakage section, budget
    notes, matched pairs (as paths), duplicate groups and per-phase peak memory to `out`."""
    import dataclasses

    from dsaudit.config import AuditConfig, ProbeConfig
    from dsaudit.pipeline import scan
    from dsaudit.similarity.duplicates import Duplicates

    captured: dict = {}
    _compute = Duplicates.compute.__func__

    def compute(cls, index, *rest, **kw):  # keep the full pair list (findings carry at most 50 pairs each)
        res = _compute(cls, index, *rest, **kw)
        captured.update(pairs=res.pairs, components=res.components, paths=res.names["path"])
        return res

    Duplicates.compute = classmethod(compute)
    os.environ["DSAUDIT_CACHE_DIR"] = str(cache)
    cfg = AuditConfig(jobs=jobs, engine=engine, probe=dataclasses.replace(ProbeConfig(), mode="off"))
    peaks = _PhasePeaks()
    t = time.perf_counter()
    res = scan(root, cfg, status=peaks.status)
    seconds = time.perf_counter() - t
    phase_peaks = peaks.stop()
    timings = res.meta.get("timings", {})
    paths = captured["paths"].astype(str)
    pairs = captured["pairs"].copy()
    pairs["a"] = paths[pairs["a"].to_numpy()]
    pairs["b"] = paths[pairs["b"].to_numpy()]
    if dump:
        pairs.sort_values(["a", "b"]).to_csv(dump, index=False)
    group_of = {str(paths[i]): g for g, members in enumerate(captured["components"]) for i in members}
    out.write_text(json.dumps({
        "seconds": seconds, "timings": timings, "leakage": res.sections.get("leakage", {}),
        "budget": [{"title": f.title, "evidence": f.evidence} for f in res.findings if f.subject.startswith("budget:")],
        "pairs": pairs[["a", "b"]].to_numpy().tolist(), "group_of": group_of,
        "memory": {"phases": phase_peaks, "index_stages": index_stage_peaks(peaks.samples, timings)},
    }, default=str))


def measured_scan(root: Path, cache: Path, jobs: int = 2, engine: str = "local", dump: str = "") -> dict:
    """One scan of `root` in a child process (cache folder `cache`: empty for a cold scan):
    scan_child's results plus `wall` (seconds, with the child's start-up) and `peak` (GB, the
    largest process of the run)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scan.json"
        cmd = [sys.executable, __file__, "--scan-child", str(root), str(cache), str(out), str(jobs), engine, dump]
        wall, peak, _ = run_measured(cmd, env)
        return dict(json.loads(out.read_text()), wall=wall, peak=peak)


if __name__ == "__main__" and len(sys.argv) == 8 and sys.argv[1] == "--scan-child":
    scan_child(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7])
