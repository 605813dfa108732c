"""The counterfactual design of the probe and its statistics (pure numpy/scipy, no TensorFlow).

The question the probe answers: how much higher is the validation score *because* the leaked
held-out images have partners in training? Comparing leaked with clean held-out images is
confounded (duplicated images tend to be easy ones), so the probe trains two models:

* run A on a training subsample that contains the training partners of the leaked images;
* run B on a subsample of the same size, the same seed and the same class mix, where each partner
  is replaced by another training image of its class;

and evaluates both on the same leaked held-out images. The inflation is A's accuracy minus B's,
paired per image: a bootstrap interval over the leaked images and an exact McNemar p-value on
the discordant pairs. The naive leaked-vs-clean gap (Wilson intervals) and a class-mix-adjusted
gap are reported as context only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

HELD_OUT = ("val", "test")
MIN_PER_CLASS_REPORT = 10      # per-class figures need at least this many leaked images


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) when n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> dict[str, Any]:
    """Exact two-sided McNemar test on paired correctness vectors.

    b = images A got right and B wrong, c = the reverse; under the null (no difference) the
    discordant images split 50/50, so p = two-sided binomial test of b out of b + c."""
    from scipy.stats import binomtest

    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(only_a, n, 0.5, alternative="two-sided").pvalue)
    return {"a_only": only_a, "b_only": only_b, "discordant": n, "p_value": min(1.0, p)}


def bootstrap_diff_interval(a_correct: np.ndarray, b_correct: np.ndarray, seed: int,
                            n_boot: int = 2000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), resampling images (pairs kept)."""
    d = np.asarray(a_correct, dtype=float) - np.asarray(b_correct, dtype=float)
    if d.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def binom_above_chance(successes: int, n: int, chance: float) -> float:
    """One-sided p-value that an accuracy of successes/n is above `chance`."""
    from scipy.stats import binomtest

    if n <= 0:
        return 1.0
    chance = min(max(chance, 1e-9), 1 - 1e-9)
    return float(binomtest(successes, n, chance, alternative="greater").pvalue)


def class_adjusted_gap(leaked_correct: np.ndarray, leaked_labels: np.ndarray,
                       clean_correct: np.ndarray, clean_labels: np.ndarray) -> dict[str, Any]:
    """Leaked accuracy minus the accuracy clean images would have with the leaked class mix.

    Removes the part of the naive gap that only comes from leaked images being of easier
    classes; classes with no clean image are left out of both sides."""
    leaked_correct = np.asarray(leaked_correct, dtype=float)
    clean_correct = np.asarray(clean_correct, dtype=float)
    leaked_labels = np.asarray(leaked_labels)
    clean_labels = np.asarray(clean_labels)
    keep = np.isin(leaked_labels, np.unique(clean_labels))
    if not keep.any():
        return {"gap": None, "expected_clean": None, "classes_used": 0}
    expected = []
    for lab in leaked_labels[keep]:
        expected.append(clean_correct[clean_labels == lab].mean())
    leaked_acc = float(leaked_correct[keep].mean())
    expected_acc = float(np.mean(expected))
    return {"gap": leaked_acc - expected_acc, "expected_clean": expected_acc,
            "leaked_accuracy": leaked_acc, "classes_used": int(len(np.unique(leaked_labels[keep]))),
            "images_used": int(keep.sum())}


def smallest_significant_count(alpha: float) -> int:
    """The fewest discordant images, all favouring one run, that make the exact two-sided McNemar
    test significant at `alpha` (6 at 0.05: p = 2 * 0.5**6 = 0.031)."""
    d = 1
    while 2.0 * 0.5 ** d >= alpha:
        d += 1
    return d


def detection_power(n: int, effect: float, alpha: float) -> float:
    """An upper bound on the chance that the probe's McNemar test finds an inflation of `effect`
    (a fraction, 0.05 = 5 points) on `n` leaked evaluation images.

    The most favourable case for the test: every image on which the two runs disagree favours the
    run with the leaked partners, so the disagreements number D ~ Binomial(n, effect), and the test
    is significant once D reaches smallest_significant_count(alpha). Any disagreement the other way
    only lowers the power, so below this bound no training can make the result conclusive."""
    from scipy.stats import binom

    if n <= 0 or effect <= 0:
        return 0.0
    need = smallest_significant_count(alpha)
    return float(binom.sf(need - 1, n, min(effect, 1.0)))


def images_for_power(effect: float, alpha: float, power: float = 0.8, limit: int = 10**7) -> int:
    """The fewest leaked evaluation images for which detection_power reaches `power`."""
    lo, hi = 1, 1
    while detection_power(hi, effect, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > limit:
            return limit
    while lo < hi:
        mid = (lo + hi) // 2
        if detection_power(mid, effect, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo


# ---------------------------------------------------------------------------------------------
# who leaks into what
# ---------------------------------------------------------------------------------------------
@dataclass
class LeakSets:
    """Positions (iloc into the index table) of the images the design uses."""

    train: np.ndarray                  # usable training images
    leaked: np.ndarray                 # held-out images with a training partner (same label)
    partners: dict[int, list[int]]     # leaked held-out position -> training partner positions
    clean: np.ndarray                  # held-out images with no training partner at all
    conflicting: int = 0               # cross-split pairs with different labels (left out)
    source: str = "pairs"              # "pairs" (leakage checks) or "groups"
    notes: list[str] = field(default_factory=list)

    @property
    def partner_set(self) -> np.ndarray:
        return np.array(sorted({p for ps in self.partners.values() for p in ps}), dtype=int)


def usable_mask(table: pd.DataFrame) -> np.ndarray:
    """Rows the probe can load: readable images with a label."""
    ok = np.ones(len(table), dtype=bool)
    if "readable" in table:
        ok &= table["readable"].fillna(False).astype(bool).to_numpy()
    if "kind" in table:
        ok &= (table["kind"].astype(str) == "image").to_numpy()
    if "bomb" in table:
        ok &= ~table["bomb"].fillna(False).astype(bool).to_numpy()
    ok &= (table["label"].astype(str) != "").to_numpy()
    return ok


def leak_sets_from_pairs(table: pd.DataFrame, pairs: pd.DataFrame | None) -> LeakSets:
    """Leaked held-out images and their training partners, from the leakage checks' pairs."""
    usable = usable_mask(table)
    split = table["split"].astype(str).to_numpy()
    label = table["label"].astype(str).to_numpy()
    train = np.flatnonzero(usable & (split == "train"))
    held = usable & np.isin(split, HELD_OUT)
    partners: dict[int, list[int]] = {}
    touched: set[int] = set()           # held-out images paired with training, whatever the label
    conflicting = 0
    if pairs is not None and len(pairs):
        a = pairs["a"].to_numpy(dtype=int)
        b = pairs["b"].to_numpy(dtype=int)
        for i, j in zip(a, b):
            if i < 0 or j < 0 or i >= len(table) or j >= len(table):
                continue
            for t, h in ((i, j), (j, i)):
                if split[t] == "train" and held[h]:
                    touched.add(int(h))
                    if not usable[t]:
                        continue
                    if label[t] != label[h]:
                        conflicting += 1
                        continue
                    partners.setdefault(int(h), [])
                    if int(t) not in partners[int(h)]:
                        partners[int(h)].append(int(t))
    leaked = np.array(sorted(partners), dtype=int)
    clean = np.array([i for i in np.flatnonzero(held) if i not in touched], dtype=int)
    return LeakSets(train=train, leaked=leaked, partners=partners, clean=clean,
                    conflicting=conflicting, source="pairs")


def leak_sets_from_groups(table: pd.DataFrame) -> LeakSets:
    """Group leakage: held-out images whose group also appears in training, partnered with every
    training image of that group (the same counterfactual, at group level)."""
    usable = usable_mask(table)
    split = table["split"].astype(str).to_numpy()
    label = table["label"].astype(str).to_numpy()
    group = table["group"].fillna("").astype(str).to_numpy() if "group" in table else \
        np.array([""] * len(table))
    train = np.flatnonzero(usable & (split == "train"))
    held = np.flatnonzero(usable & np.isin(split, HELD_OUT))
    by_group: dict[str, list[int]] = {}
    for t in train:
        if group[t]:
            by_group.setdefault(group[t], []).append(int(t))
    partners: dict[int, list[int]] = {}
    clean = []
    for h in held:
        g = group[h]
        same = [t for t in by_group.get(g, []) if label[t] == label[h]] if g else []
        if same:
            partners[int(h)] = same
        elif not (g and g in by_group):
            clean.append(int(h))
    return LeakSets(train=train, leaked=np.array(sorted(partners), dtype=int), partners=partners,
                    clean=np.array(clean, dtype=int), source="groups")


def cross_split_pair_count(table: pd.DataFrame, pairs: pd.DataFrame | None) -> int:
    """How many pairs join a training image with a held-out one (what 'auto' mode looks for)."""
    if pairs is None or not len(pairs):
        return 0
    split = table["split"].astype(str).to_numpy()
    a = pairs["a"].to_numpy(dtype=int)
    b = pairs["b"].to_numpy(dtype=int)
    ok = (a >= 0) & (b >= 0) & (a < len(table)) & (b < len(table))
    a, b = a[ok], b[ok]
    sa, sb = split[a], split[b]
    return int(np.sum(((sa == "train") & np.isin(sb, HELD_OUT))
                      | ((sb == "train") & np.isin(sa, HELD_OUT))))


# ---------------------------------------------------------------------------------------------
# subsamples for runs A and B
# ---------------------------------------------------------------------------------------------
@dataclass
class Design:
    """The two training sets and the evaluation sets, as table positions."""

    train_a: np.ndarray
    train_b: np.ndarray
    leaked: np.ndarray
    clean: np.ndarray
    partners: np.ndarray
    replacements: np.ndarray
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"train_size": int(len(self.train_a)), "partners": int(len(self.partners)),
                "replacements": int(len(self.replacements)), "leaked_eval": int(len(self.leaked)),
                "clean_eval": int(len(self.clean))}


def choose_leaked(sets: LeakSets, max_partners: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Leaked held-out images to evaluate, so that their partners number at most `max_partners`."""
    notes: list[str] = []
    leaked = sets.leaked
    rng = np.random.default_rng(seed + 11)
    order = leaked[rng.permutation(len(leaked))]
    chosen, used = [], set()
    for h in order:
        new = set(sets.partners[int(h)]) - used
        if len(used) + len(new) > max_partners:
            continue
        used |= new
        chosen.append(int(h))
    if len(chosen) < len(leaked):
        notes.append(f"evaluated {len(chosen)} of {len(leaked)} leaked held-out images so that "
                     f"their training partners ({len(used)}) fit in half the training subsample")
    return np.array(sorted(chosen), dtype=int), notes


def make_design(sets: LeakSets, labels: np.ndarray, train_size: int, seed: int,
                max_clean: int = 2000) -> Design:
    """Runs A and B: equal size, equal class mix, same seed; A holds the partners, B does not.

    `labels` is the label of every table row (array indexed by position)."""
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    train_size = int(min(train_size, len(sets.train)))
    max_partners = max(1, train_size // 2)
    while True:
        # every partner needs a replacement outside the partners
        leaked, more = choose_leaked(sets, max_partners, seed)
        partners = np.array(sorted({p for h in leaked for p in sets.partners[int(h)]}), dtype=int)
        rest = np.setdiff1d(sets.train, partners)
        if len(rest) >= len(partners) or max_partners <= 1:
            break
        max_partners = max(1, min(max_partners - 1, len(rest)))
    if len(rest) < len(partners):
        leaked, partners, more = np.zeros(0, dtype=int), np.zeros(0, dtype=int), \
            ["too few training images outside the partners to replace them"]
        rest = np.array(sets.train)
    notes += more
    rest = rest[rng.permutation(len(rest))]
    # replacements: per class, as many non-partner training images as there are partners
    replacements: list[int] = []
    taken = np.zeros(len(rest), dtype=bool)
    short = 0
    for lab in sorted(set(labels[partners])):
        need = int(np.sum(labels[partners] == lab))
        cand = np.flatnonzero((labels[rest] == lab) & ~taken)[:need]
        taken[cand] = True
        replacements += rest[cand].tolist()
        short += need - len(cand)
    if short:
        cand = np.flatnonzero(~taken)[:short]
        taken[cand] = True
        replacements += rest[cand].tolist()
        notes.append(f"{short} partner(s) could not be replaced by a training image of the same "
                     "class; other classes filled in")
    common_n = max(0, train_size - len(partners))
    common = rest[~taken][:common_n]
    train_a = np.concatenate([common, partners]).astype(int)
    train_b = np.concatenate([common, np.array(replacements, dtype=int)]).astype(int)
    clean = sets.clean
    if len(clean) > max_clean:
        clean = np.sort(rng.choice(clean, size=max_clean, replace=False))
        notes.append(f"evaluated {max_clean} of {len(sets.clean)} clean held-out images")
    return Design(train_a=np.sort(train_a), train_b=np.sort(train_b), leaked=leaked, clean=clean,
                  partners=partners, replacements=np.array(sorted(replacements), dtype=int),
                  notes=notes)


# ---------------------------------------------------------------------------------------------
# budget planning
# ---------------------------------------------------------------------------------------------
@dataclass
class Plan:
    train_size: int
    epochs: int
    input_size: int
    feasible: bool
    cuts: list[str]
    estimate_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"train_size": self.train_size, "epochs": self.epochs, "input_size": self.input_size,
                "feasible": self.feasible, "estimated_seconds": round(self.estimate_seconds, 2),
                "cuts": list(self.cuts)}


def plan_budget(available: float, train_pool: int, fixed_images: int, load_per_image: float,
                train_per_sample: dict[int, float], eval_per_sample: dict[int, float],
                input_sizes: Sequence[int], max_train: int, max_epochs: int, min_epochs: int,
                min_train: int) -> Plan:
    """Choose input size, subsample size and epochs so that two runs fit in `available` seconds.

    Cost model: loading (fixed_images + 2 * n images, upper bound) + 2 runs * epochs * n *
    train_per_sample + evaluation. Preference order: full epochs, then the largest subsample
    (down to min_train), then fewer epochs (down to min_epochs), then a smaller input size."""
    cuts: list[str] = []
    n_full = int(min(max_train, train_pool))
    if train_pool > max_train:
        cuts.append(f"training subsample capped at {max_train} of {train_pool} images "
                    "(memorisation shows best on small subsamples)")

    def cost(n: int, epochs: int, size: int) -> float:
        return (load_per_image * (fixed_images + 2 * n)
                + 2 * epochs * n * train_per_sample[size]
                + 2 * fixed_images * eval_per_sample[size])

    first = input_sizes[0]
    best = None
    for size in input_sizes:
        if cost(n_full, max_epochs, size) <= available:
            best = (n_full, max_epochs, size)
            break
        # largest n with max_epochs, but not below min_train
        per = 2 * max_epochs * train_per_sample[size] + 2 * load_per_image
        room = available - load_per_image * fixed_images - 2 * fixed_images * eval_per_sample[size]
        n = int(room / per) if per > 0 else n_full
        if n >= min(min_train, n_full):
            best = (min(n, n_full), max_epochs, size)
            break
        n = min(min_train, n_full)
        per_epoch = 2 * n * train_per_sample[size]
        room_e = room - 2 * load_per_image * n
        epochs = int(room_e / per_epoch) if per_epoch > 0 else max_epochs
        if epochs >= min_epochs:
            best = (n, min(epochs, max_epochs), size)
            break
    feasible = best is not None
    if best is None:
        size = input_sizes[-1]
        best = (min(min_train, n_full), min_epochs, size)
    n, epochs, size = best
    if size != first:
        cuts.append(f"input size reduced from {first} to {size} px to fit the budget")
    if n < n_full:
        cuts.append(f"training subsample reduced from {n_full} to {n} images to fit the budget")
    if epochs < max_epochs:
        cuts.append(f"epochs reduced from {max_epochs} to {epochs} to fit the budget")
    if not feasible:
        cuts.append("even the smallest plan exceeds the budget; the runs stop when it runs out")
    return Plan(train_size=n, epochs=epochs, input_size=size, feasible=feasible, cuts=cuts,
                estimate_seconds=cost(n, epochs, size))


# ---------------------------------------------------------------------------------------------
# the verdict numbers
# ---------------------------------------------------------------------------------------------
def inflation_stats(a_leaked: np.ndarray, b_leaked: np.ndarray, seed: int) -> dict[str, Any]:
    """Paired inflation on the leaked images: A - B with bootstrap interval and McNemar p."""
    a = np.asarray(a_leaked, dtype=bool)
    b = np.asarray(b_leaked, dtype=bool)
    n = int(a.size)
    if n == 0:
        return {"n": 0, "inflation": None, "interval": None, "p_value": None}
    lo, hi = bootstrap_diff_interval(a, b, seed)
    mc = mcnemar_exact(a, b)
    return {"n": n, "accuracy_with_partners": float(a.mean()),
            "accuracy_without_partners": float(b.mean()),
            "inflation": float(a.mean() - b.mean()), "interval": [lo, hi],
            "p_value": mc["p_value"], "mcnemar": mc}


def naive_gap(leaked_correct: np.ndarray, clean_correct: np.ndarray) -> dict[str, Any]:
    """Context only: accuracy on leaked minus accuracy on clean held-out images (Wilson CIs)."""
    lk = np.asarray(leaked_correct, dtype=bool)
    cl = np.asarray(clean_correct, dtype=bool)
    out: dict[str, Any] = {}
    for name, v in (("leaked", lk), ("clean", cl)):
        out[name] = {"n": int(v.size), "accuracy": float(v.mean()) if v.size else None,
                     "interval": list(wilson_interval(int(v.sum()), int(v.size)))}
    out["gap"] = (float(lk.mean() - cl.mean()) if lk.size and cl.size else None)
    return out


def per_class(labels: np.ndarray, a: np.ndarray, b: np.ndarray,
              min_n: int = MIN_PER_CLASS_REPORT) -> list[dict[str, Any]]:
    """Per-class inflation where a class has at least `min_n` leaked images."""
    rows = []
    labels = np.asarray(labels)
    for lab in sorted(set(labels.tolist())):
        m = labels == lab
        if m.sum() < min_n:
            continue
        rows.append({"label": str(lab), "n": int(m.sum()),
                     "accuracy_with_partners": float(np.mean(a[m])),
                     "accuracy_without_partners": float(np.mean(b[m])),
                     "inflation": float(np.mean(a[m]) - np.mean(b[m]))})
    return rows


def jsonable(obj: Any) -> Any:
    """Plain Python types all the way down (numpy scalars and arrays, tuples, NaN -> None)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)) or isinstance(obj, np.ndarray):
        return [jsonable(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    return obj


def counts(values: Iterable[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))
