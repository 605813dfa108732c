"""Run the counterfactual probe within a wall-time budget and summarise it (JSON-able).

Order of work, timed against one deadline: import TensorFlow; load the held-out images and the
training partners (this also measures the decode rate); time a few training steps at the chosen
input size; plan subsample size, epochs and input size to fit what is left; load the rest of the
training subsample; train run A, then run B (same seed, same schedule, stopped at the same epoch
if A was cut); evaluate; compute the statistics. Everything the budget cut is listed in `cuts`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.probe import design as D

MAX_TRAIN = 5000        # memorisation shows on small subsamples (issue 5 trial on CIFAR-10)
MAX_EPOCHS = 20
MIN_EPOCHS = 5
MIN_TRAIN = 64
MIN_STEPS = 300         # tiny subsamples get more epochs so that a run takes at least this many steps
MAX_CLEAN = 2000
LARGE_MIN_SIDE = 64     # median short side at or above this: 128 px input with stride-2 first conv


@dataclass
class ProbeSettings:
    budget_seconds: float = 300.0
    seed: int = 0
    jobs: int | None = None
    max_train: int = MAX_TRAIN
    max_epochs: int = MAX_EPOCHS
    min_epochs: int = MIN_EPOCHS
    min_steps: int = MIN_STEPS


def epochs_for(n: int, max_epochs: int, min_steps: int) -> int:
    """`max_epochs`, raised (up to 3x) for tiny subsamples so that training takes `min_steps` steps."""
    from dsaudit.probe.model import batch_size_for

    steps = max(1, -(-n // batch_size_for(max(n, 1))))
    return int(min(3 * max_epochs, max(max_epochs, -(-min_steps // steps))))


def input_sizes(table: pd.DataFrame, rows: np.ndarray) -> list[int]:
    """Candidate input sizes, preferred first: [32] for small images, [128, 64] for large ones."""
    from dsaudit.probe.model import LARGE_SIZE, SMALL_SIZE

    if "width" in table and "height" in table and len(rows):
        w = pd.to_numeric(table["width"].iloc[rows], errors="coerce").fillna(0).to_numpy()
        h = pd.to_numeric(table["height"].iloc[rows], errors="coerce").fillna(0).to_numpy()
        side = np.minimum(w, h)
        side = side[side > 0]
        if side.size and float(np.median(side)) >= LARGE_MIN_SIDE:
            return [LARGE_SIZE, 64]
    return [SMALL_SIZE]


class _Images:
    """Decoded images by table position, loaded on demand at one input size."""

    def __init__(self, table: pd.DataFrame, size: int, jobs: int | None):
        self.paths = table["abs_path"].astype(str).to_numpy()
        self.size = size
        self.jobs = jobs
        self.cache: dict[int, np.ndarray] = {}
        self.failed: set[int] = set()
        self.seconds = 0.0
        self.loaded = 0

    def load(self, rows: np.ndarray) -> None:
        from dsaudit.probe.model import load_images

        todo = [int(r) for r in rows if int(r) not in self.cache and int(r) not in self.failed]
        if not todo:
            return
        t = time.monotonic()
        imgs, ok = load_images([self.paths[r] for r in todo], self.size, self.jobs)
        self.seconds += time.monotonic() - t
        self.loaded += len(todo)
        for r, img, good in zip(todo, imgs, ok):
            if good:
                self.cache[r] = img
            else:
                self.failed.add(r)

    def per_image(self) -> float:
        return self.seconds / self.loaded if self.loaded else 0.01

    def ok(self, rows: np.ndarray) -> np.ndarray:
        return np.array([int(r) for r in rows if int(r) in self.cache], dtype=int)

    def array(self, rows: np.ndarray, size: int | None = None) -> np.ndarray:
        from dsaudit.probe.model import resize_array

        if len(rows) == 0:
            s = size or self.size
            return np.zeros((0, s, s, 3), dtype=np.uint8)
        arr = np.stack([self.cache[int(r)] for r in rows])
        if size and size != self.size:
            arr = resize_array(arr, size)
        return arr


def _equalize(a: np.ndarray, b: np.ndarray, partners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal sizes after late decode failures: trim images that are not partners (from A) or
    not shared with A (from B, else shared ones)."""
    a, b = list(a), list(b)
    keep = set(int(p) for p in partners)
    while len(a) > len(b):
        drop = next(x for x in reversed(a) if int(x) not in keep)
        a.remove(drop)
    while len(b) > len(a):
        extra = [x for x in b if x not in set(a)]
        b.remove(extra[-1] if extra else b[-1])
    return np.array(a, dtype=int), np.array(b, dtype=int)


def run_probe(table: pd.DataFrame, sets: D.LeakSets, settings: ProbeSettings) -> dict[str, Any]:
    """The full probe for one set of leaks. Returns a JSON-able result dictionary."""
    start = time.monotonic()
    deadline = start + settings.budget_seconds
    seed = int(settings.seed)
    cuts: list[str] = []
    notes: list[str] = list(sets.notes)
    timings: dict[str, float] = {}
    labels_all = table["label"].astype(str).to_numpy()
    classes = sorted(set(labels_all[sets.train].tolist()))
    class_id = {c: i for i, c in enumerate(classes)}
    result: dict[str, Any] = {"status": "ran", "source": sets.source, "seed": seed,
                              "budget_seconds": settings.budget_seconds, "classes": classes}
    if len(classes) < 2:
        return {**result, "status": "skipped", "reason": "fewer than two classes in training"}

    in_train = np.isin(labels_all, classes)
    unseen = int((~in_train[sets.leaked]).sum() + (~in_train[sets.clean]).sum()) if \
        len(sets.leaked) + len(sets.clean) else 0
    if unseen:
        notes.append(f"{unseen} held-out image(s) of classes absent from training left out")
    sets = D.LeakSets(train=sets.train, leaked=sets.leaked[in_train[sets.leaked]],
                      partners={h: p for h, p in sets.partners.items() if in_train[h]},
                      clean=sets.clean[in_train[sets.clean]], conflicting=sets.conflicting,
                      source=sets.source, notes=notes)

    from dsaudit.probe.model import (batch_size_for, calibrate, import_tf, train_and_predict,
                                      train_pair)

    t = time.monotonic()
    import_tf(settings.jobs)
    timings["import_tensorflow"] = time.monotonic() - t

    sizes = input_sizes(table, sets.train)
    images = _Images(table, sizes[0], settings.jobs)
    # fixed images first: leaked held-out images (capped by partners), clean held-out images
    leaked_pre, more = D.choose_leaked(sets, max(1, min(settings.max_train, len(sets.train)) // 2),
                                       seed)
    notes += more
    clean_pre = sets.clean
    if len(clean_pre) > MAX_CLEAN:
        clean_pre = np.sort(np.random.default_rng(seed).choice(clean_pre, MAX_CLEAN, replace=False))
        notes.append(f"evaluated {MAX_CLEAN} of {len(sets.clean)} clean held-out images")
    partners_pre = np.array(sorted({p for h in leaked_pre for p in sets.partners[int(h)]}), dtype=int)
    t = time.monotonic()
    images.load(np.concatenate([leaked_pre, clean_pre, partners_pre]).astype(int))
    # a pilot of ordinary training images, also used to time training steps
    rng = np.random.default_rng(seed + 1)
    rest = np.setdiff1d(sets.train, partners_pre)
    pilot = rest[rng.permutation(len(rest))[:256]]
    images.load(pilot)
    timings["load_fixed"] = time.monotonic() - t
    failed = len(images.failed)
    if failed:
        notes.append(f"{failed} image(s) could not be decoded by the probe and were left out")
    # drop undecodable images from the sets
    ok_leaked = [h for h in leaked_pre if int(h) in images.cache
                 and all(p in images.cache for p in sets.partners[int(h)])]
    sets = D.LeakSets(train=np.array([r for r in sets.train if r not in images.failed], dtype=int),
                      leaked=np.array(ok_leaked, dtype=int),
                      partners={int(h): sets.partners[int(h)] for h in ok_leaked},
                      clean=images.ok(clean_pre), conflicting=sets.conflicting,
                      source=sets.source, notes=notes)
    fixed = len(sets.leaked) + len(sets.clean)

    # time training at each candidate size until a plan fits
    plan = None
    calib = {}
    t = time.monotonic()
    pilot_ok = images.ok(np.concatenate([pilot, partners_pre]).astype(int))[:256]
    if len(pilot_ok) < 2:
        return {**result, "status": "skipped", "reason": "too few decodable training images",
                "notes": notes}
    y_pilot = np.array([class_id[labels_all[r]] for r in pilot_ok])
    n_runs = 1 if len(sets.leaked) == 0 else 2
    n_full = min(settings.max_train, len(sets.train) - len(partners_pre))
    max_epochs = epochs_for(n_full, settings.max_epochs, settings.min_steps)
    for k, size in enumerate(sizes):
        c = calibrate(images.array(pilot_ok, size), y_pilot, len(classes), seed, settings.jobs,
                      batch=batch_size_for(max(1, n_full)))
        calib[size] = c
        run_overhead = c["overhead"] + c["eval_overhead"]
        available = (deadline - time.monotonic()) * 0.8 - n_runs * run_overhead - 0.5
        p = D.plan_budget(available, max(1, n_full), fixed, images.per_image(),
                          {size: c["train_per_sample"]}, {size: c["eval_per_sample"]}, [size],
                          settings.max_train, max_epochs, settings.min_epochs,
                          MIN_TRAIN)
        plan = p
        if p.feasible and (p.train_size >= min(1000, len(sets.train)) or k == len(sizes) - 1):
            break
        if k < len(sizes) - 1 and not p.feasible:
            continue
        if p.feasible:
            break
    assert plan is not None
    timings["calibrate"] = time.monotonic() - t
    c = calib[plan.input_size]
    needed = n_runs * (c["overhead"] + c["eval_overhead"]
                       + settings.min_epochs * min(MIN_TRAIN, n_full) * c["train_per_sample"]
                       + fixed * c["eval_per_sample"])
    if time.monotonic() + needed > deadline:
        spent = time.monotonic() - start
        return D.jsonable({**result, "status": "skipped",
                           "reason": f"the budget of {settings.budget_seconds:.0f} s is too small: "
                                     f"{spent:.1f} s went to loading and timing, and the smallest "
                                     f"useful runs need about {needed:.0f} s more on this machine",
                           "calibration": calib, "timings": timings, "notes": notes,
                           "elapsed_seconds": round(spent, 3), "within_budget": True})
    size = plan.input_size
    if size != sizes[0]:
        cuts.append(f"input size reduced from {sizes[0]} to {size} px to fit the budget")
    cuts += plan.cuts
    result["input_size"] = size
    result["plan"] = plan.to_dict()
    result["calibration"] = {str(s): {k: round(float(v), 6) for k, v in c.items()}
                             for s, c in calib.items()}

    leaked_set = {int(h) for h in sets.leaked}
    baseline_only = len(sets.leaked) == 0
    des = D.make_design(sets, labels_all, plan.train_size, seed, max_clean=MAX_CLEAN)
    notes += des.notes
    t = time.monotonic()
    images.load(np.union1d(des.train_a, des.train_b))
    timings["load_train"] = time.monotonic() - t
    train_a, train_b = _equalize(images.ok(des.train_a), images.ok(des.train_b), des.partners)
    leaked = np.array([h for h in des.leaked if int(h) in leaked_set], dtype=int)
    clean = des.clean
    x_leaked, x_clean = images.array(leaked, size), images.array(clean, size)
    y_leaked = np.array([class_id[labels_all[r]] for r in leaked], dtype=int)
    y_clean = np.array([class_id[labels_all[r]] for r in clean], dtype=int)
    runs_todo = [("B", train_b)] if baseline_only else [("A", train_a), ("B", train_b)]
    runs: dict[str, Any] = {}
    epochs = plan.epochs
    eval_reserve = 2 * (calib[size]["eval_overhead"] + fixed * calib[size]["eval_per_sample"]) + 0.2
    xs = {name: images.array(rows, size) for name, rows in runs_todo}
    ys = {name: np.array([class_id[labels_all[r]] for r in rows], dtype=int) for name, rows in runs_todo}
    if baseline_only:
        runs["B"] = train_and_predict(xs["B"], ys["B"], [x_leaked, x_clean], len(classes), epochs,
                                      seed, deadline=deadline - eval_reserve, jobs=settings.jobs,
                                      epoch_estimate=1.5 * len(xs["B"]) * calib[size]["train_per_sample"])
    else:
        # lockstep: A and B always complete the same epochs, whatever the load does
        runs["A"], runs["B"] = train_pair(
            xs["A"], ys["A"], xs["B"], ys["B"], [x_leaked, x_clean], len(classes), epochs, seed,
            deadline=deadline - eval_reserve,
            hard_deadline=deadline + 0.1 * settings.budget_seconds - eval_reserve,
            jobs=settings.jobs,
            epoch_estimate=1.5 * (len(xs["A"]) + len(xs["B"])) * calib[size]["train_per_sample"])
    done = {r.epochs_done for r in runs.values()}
    equal = len(done) == 1
    if any(r.stopped_by_budget for r in runs.values()):
        cuts.append(f"training stopped by the budget after {min(done)} of {plan.epochs} epochs"
                    + (" (both runs alike)" if equal and not baseline_only else ""))
    if not equal:
        cuts.append("runs A and B completed different numbers of epochs: the comparison is "
                    "inconclusive")
    result["equal_training"] = equal
    timings["train_and_evaluate"] = sum(r.seconds for r in runs.values())

    def correct(run, k, y):
        return runs[run].predictions[k] == y

    b_leak, b_clean = correct("B", 0, y_leaked), correct("B", 1, y_clean)
    run_rows = []
    for name, rows in runs_todo:
        r = runs[name]
        lk, cl = correct(name, 0, y_leaked), correct(name, 1, y_clean)
        run_rows.append({"name": name, "with_partners": name == "A", **r.to_dict(),
                         "leaked_accuracy": float(lk.mean()) if lk.size else None,
                         "clean_accuracy": float(cl.mean()) if cl.size else None})
    result["runs"] = run_rows
    result["design"] = {**des.to_dict(), "leaked_eval": int(len(leaked)), "clean_eval": int(len(clean)),
                        "train_size_a": int(len(train_a)), "train_size_b": int(len(train_b)),
                        "leaked_available": int(len(leaked_set)),
                        "conflicting_label_pairs": int(sets.conflicting),
                        "partner_classes": D.counts(labels_all[des.partners]),
                        "replacement_classes": D.counts(labels_all[des.replacements])}
    # learnability of the honest run (B) on clean held-out images
    train_counts = np.bincount([class_id[labels_all[r]] for r in train_b], minlength=len(classes))
    majority = int(np.argmax(train_counts))
    chance = float(np.mean(y_clean == majority)) if y_clean.size else None
    ncl = int(b_clean.size)
    result["learnability"] = {
        "clean_n": ncl, "clean_accuracy": float(b_clean.mean()) if ncl else None,
        "interval": list(D.wilson_interval(int(b_clean.sum()), ncl)) if ncl else None,
        "chance": chance, "chance_rule": "accuracy of always predicting the largest training class",
        "p_value_above_chance": D.binom_above_chance(int(b_clean.sum()), ncl, chance)
        if ncl and chance is not None else None,
    }
    if not baseline_only:
        a_leak, a_clean = correct("A", 0, y_leaked), correct("A", 1, y_clean)
        result["inflation"] = D.inflation_stats(a_leak, b_leak, seed)
        result["control_clean"] = {
            "n": int(a_clean.size),
            "difference": float(a_clean.mean() - b_clean.mean()) if a_clean.size else None,
            "note": "A minus B on clean held-out images: run-to-run noise, expected near zero"}
        result["context"] = {
            "note": "context only, never the verdict: leaked images are often easy ones",
            "naive_gap": D.naive_gap(a_leak, a_clean),
            "adjusted_gap": D.class_adjusted_gap(a_leak, y_leaked, a_clean, y_clean),
        }
        pc = D.per_class(np.array([classes[i] for i in y_leaked]), a_leak, b_leak)
        result["per_class"] = pc
    result["cuts"] = cuts
    result["notes"] = notes
    timings = {k: round(v, 3) for k, v in timings.items()}
    result["timings"] = timings
    result["elapsed_seconds"] = round(time.monotonic() - start, 3)
    result["within_budget"] = bool(result["elapsed_seconds"] <= settings.budget_seconds * 1.1 + 5)
    return D.jsonable(result)
