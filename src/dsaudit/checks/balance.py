"""DSA10x: are the classes and splits sized and distributed so that a metric on them means something?

All checks here count *samples*: rows of the index whose kind is "image" (decoded images). Broken,
empty and non-image files are the integrity checks' business and are left out of every count, so the
numbers match what a loader that skips bad files would see. The helpers at the top are shared with
the batching, ordering and shortcut checks.

Formulas (see docs/split-health.md for worked examples):

* imbalance ratio = largest class count / smallest class count (classes with at least one sample);
* 'balanced' class weight of class c = n / (k * n_c), exactly scikit-learn's
  ``compute_class_weight("balanced", ...)``, printed as a Keras dict keyed by class index in
  sorted() folder order (what Keras' loaders assign) and a PyTorch tensor in that order;
* split shift: chi-square test of homogeneity on the 2 x k table (train counts, split counts) over the
  classes both splits share, and total variation distance TVD = 1/2 * sum_c |p_train(c) - p_split(c)|;
* 95% confidence half-width of an accuracy measured on n samples, worst case p = 0.5:
  h = z * sqrt(0.25 / n), z = 1.959964; the size that reaches a bound b is ceil(z^2 * 0.25 / b^2).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from dsaudit.checks.base import Check, CheckContext
from dsaudit.findings import Finding, Severity
from dsaudit.similarity.duplicates import Duplicates
from dsaudit.stats import chi2_independence

Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)
SPLIT_ORDER = ("train", "val", "test", "")


# -- helpers shared by the split-health checks ---------------------------------------------------

def samples(table: pd.DataFrame) -> pd.DataFrame:
    """Rows that are samples a loader would train on: decoded images (kind == "image")."""
    if "kind" not in table.columns:
        return table
    return table[table["kind"] == "image"]


def split_name(split: str) -> str:
    """How a split is named in messages, subjects and sections ("" is the pool)."""
    return split if split else "pool"


def ordered_splits(ctx: CheckContext, table: pd.DataFrame) -> list[str]:
    """Splits present in the layout or the table, in train/val/test/pool order."""
    present = set(ctx.index.layout.splits) | set(table["split"].unique())
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))


def class_counts(table: pd.DataFrame, split: str) -> dict[str, int]:
    """Samples per class in one split, classes sorted by name, only classes with samples."""
    part = table[table["split"] == split]
    counts = part["label"].value_counts()
    return {str(k): int(counts[k]) for k in sorted(counts.index, key=str)}


def balanced_weights(counts: dict[str, int]) -> dict[str, float]:
    """scikit-learn's compute_class_weight("balanced"): n_samples / (n_classes * n_c)."""
    n = sum(counts.values())
    k = len(counts)
    return {c: n / (k * m) for c, m in counts.items() if m > 0}


def paste_ready_weights(classes: list[str], counts: dict[str, int]) -> dict[str, Any]:
    """Balanced class weights as code to paste: a Keras `class_weight` dict keyed by class index and
    a PyTorch weight tensor, both in the order Keras' `flow_from_directory` and
    `image_dataset_from_directory` number the class folders (Python's sorted(), so 'B' < 'a'),
    values at full precision (repr). Keras looks weights up by integer index: a dict keyed by class
    name is accepted by `fit` and silently does nothing. A class folder without samples keeps its
    index but has no weight (scikit-learn refuses to weigh it); the comment says so."""
    order = sorted(set(classes) | set(counts))
    weights = balanced_weights({c: m for c, m in counts.items() if m > 0})
    index = {c: i for i, c in enumerate(order)}
    legend = ", ".join(f"{i}={c}" for c, i in index.items())
    keras = {index[c]: weights[c] for c in order if c in weights}
    empty = [c for c in order if c not in weights]
    note = f"; no weight for empty class(es) {', '.join(empty)}" if empty else ""
    keras_line = "class_weight = {" + ", ".join(f"{i}: {w!r}" for i, w in keras.items()) + "}"
    torch_line = ("weight = torch.tensor([" + ", ".join(repr(weights.get(c, 0.0)) for c in order) + "])")
    snippet = (f"# Keras: model.fit(..., class_weight=class_weight)\n{keras_line}  # {legend}{note}\n"
               f"# PyTorch: torch.nn.CrossEntropyLoss(weight=weight)\n{torch_line}  # {legend}{note}")
    return {"class_index": index, "keras_class_weight": keras, "snippet": snippet}


def ci_halfwidth(n: int) -> float:
    """95% normal-approximation half-width of an accuracy on n samples, worst case p = 0.5."""
    return Z95 * math.sqrt(0.25 / n) if n > 0 else float("inf")


def n_for_halfwidth(bound: float) -> int:
    """Smallest n whose worst-case 95% half-width is at most `bound`."""
    return int(math.ceil(Z95 * Z95 * 0.25 / (bound * bound) - 1e-9))


def pct(x: float, digits: int = 1) -> str:
    return f"{100.0 * x:.{digits}f}%"


def _median_target(counts: dict[str, int]) -> int:
    med = float(np.median(list(counts.values())))
    return int(math.floor(med + 0.5))


def resample_to_median(counts: dict[str, int]) -> dict[str, Any]:
    """What random over-sampling (of small classes) and under-sampling (of large ones) to the median
    class count would give: every class at the median, how many copies it adds and samples it drops."""
    target = _median_target(counts)
    per_class = {c: {"from": n, "to": target, "change": target - n} for c, n in counts.items()}
    return {
        "target_per_class": target,
        "total_before": sum(counts.values()),
        "total_after": target * len(counts),
        "duplicated": sum(max(0, target - n) for n in counts.values()),
        "discarded": sum(max(0, n - target) for n in counts.values()),
        "oversample_only_total": sum(max(n, target) for n in counts.values()),
        "undersample_only_total": sum(min(n, target) for n in counts.values()),
        "per_class": per_class,
    }


def tail_source(ctx: CheckContext, table: pd.DataFrame) -> str | None:
    """The split a `validation_split` would be carved from: the pool (or unsplit manifest rows) if
    there is one, else train; None when neither exists."""
    splits = ordered_splits(ctx, table)
    if "" in splits:
        return ""
    return "train" if "train" in splits else None


def tail_split(part: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Keras' model.fit(validation_split=f) on arrays in loader order: the first floor(n * (1 - f))
    rows train, the rest validate, before any shuffling. Returns (train side, tail, split_at)."""
    part = part.sort_values("order", kind="stable")
    split_at = int(math.floor(len(part) * (1.0 - fraction)))
    return part.iloc[:split_at], part.iloc[split_at:], split_at


def _section(ctx: CheckContext) -> dict[str, Any]:
    return ctx.sections.setdefault("balance", {})


LABELS_ONLY = "label proportions only, not image content"


def state(ctx: CheckContext, topic: str, text: str) -> None:
    """Say what a check tested and found, including "nothing found": `sections.statements`, which
    the terminal summary prints, so a clean result is stated rather than left to silence."""
    ctx.sections.setdefault("statements", []).append({"topic": topic, "text": text})


# -- checks ----------------------------------------------------------------------------------------

class ClassImbalance(Check):
    """Classes of very different sizes within a split.

    Why: With a 10:1 imbalance a model that always answers the majority class already scores about 91%
    accuracy, so accuracy hides whether the minority class is learned at all; the loss is dominated by
    the majority class.
    Fix: Weight the loss with the 'balanced' class weights in the evidence (Keras: `model.fit(...,
    class_weight=weights)`; scikit-learn: `class_weight="balanced"`), resample (over-sample the small
    classes or under-sample the large ones; the evidence shows what resampling to the median gives),
    collect more data for the small classes, and report per-class recall or balanced accuracy.
    Thresholds: balance.imbalance_warn_ratio (largest/smallest class count, default 3) gives a warning,
    balance.imbalance_error_ratio (default 10) an error; from balance.class_weight_min_ratio (default
    1.5) a training split (or pool) gets its paste-ready weights as info below the warning.
    """

    id = "DSA101"
    name = "balance.class-imbalance"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        cfg = ctx.config.balance
        t = samples(ctx.index.table)
        table: dict[str, Any] = {}
        for split in ordered_splits(ctx, t):
            counts = class_counts(t, split)
            n = sum(counts.values())
            if n == 0:
                continue
            weights = balanced_weights(counts)
            ratio = max(counts.values()) / min(counts.values()) if counts else 1.0
            table[split_name(split)] = {
                "split": split, "total": n, "imbalance_ratio": ratio,
                "classes": {c: {"count": m, "share": m / n, "weight": weights[c]} for c, m in counts.items()},
            }
            trains = split in ("train", "")
            floor = min(cfg.class_weight_min_ratio, cfg.imbalance_warn_ratio) if trains else cfg.imbalance_warn_ratio
            if len(counts) < 2 or ratio < floor:
                continue
            severity = (Severity.ERROR if ratio >= cfg.imbalance_error_ratio else
                        Severity.WARNING if ratio >= cfg.imbalance_warn_ratio else Severity.INFO)
            major = max(counts, key=lambda c: (counts[c], c))
            minor = min(counts, key=lambda c: (counts[c], c))
            resampled = resample_to_median(counts)
            paste = paste_ready_weights(list(ctx.index.layout.classes.get(split, [])), counts) if trains else {}
            weights_text = (f"Balanced class weights, ready to paste:\n{paste['snippet']}\n" if trains else
                            "Class weights belong to the training split; here report per-class metrics. ")
            title = (f"Class imbalance {ratio:.1f}:1 in {split_name(split)}" if severity > Severity.INFO else
                     f"Class weights for {split_name(split)} ({ratio:.1f}:1, below the warning ratio)")
            yield self.finding(
                title,
                f"In {split_name(split)}, {major!r} has {counts[major]} samples ({pct(counts[major] / n)}) "
                f"and {minor!r} {counts[minor]} ({pct(counts[minor] / n)}): a ratio of {ratio:.2f}. "
                f"Always predicting {major!r} scores {pct(counts[major] / n)} accuracy. "
                f"{weights_text}Resampling every class to the median "
                f"({resampled['target_per_class']}) would duplicate {resampled['duplicated']} and drop "
                f"{resampled['discarded']} samples.",
                subject=f"split:{split_name(split)}", severity=severity,
                evidence={**paste,
                    "split": split_name(split), "total": n, "counts": counts,
                    "shares": {c: m / n for c, m in counts.items()},
                    "imbalance_ratio": ratio, "majority": major, "minority": minor,
                    "majority_baseline_accuracy": counts[major] / n,
                    "class_weights": weights, "resample_to_median": resampled,
                    "warn_ratio": cfg.imbalance_warn_ratio, "error_ratio": cfg.imbalance_error_ratio,
                })
        _section(ctx)["splits"] = table


class SplitShift(Check):
    """Class proportions of a validation or test split differ from those of train.

    This compares label proportions only: whether the images themselves differ between the splits
    (content drift: another scanner, another hospital, other lighting) is not tested here. The
    terminal states the result for every split compared, "no shift found" included.

    Why: A model is tuned to the class priors it trains on; when validation or test has different
    proportions, accuracy there is not comparable with training accuracy and early stopping or model
    selection optimise for the wrong mix. (Classes missing from a split entirely are DSA011.)
    Fix: Re-split with stratification (`train_test_split(..., stratify=labels)` or a per-class split), or
    if the shift is intended (a deployment mix), report per-class metrics and say so.
    Thresholds: a finding needs both a chi-square p-value below balance.shift_p_value (default 0.01) and
    a total variation distance of at least balance.shift_min_tvd (default 0.10), over the classes the
    two splits share.
    """

    id = "DSA102"
    name = "balance.split-shift"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        cfg = ctx.config.balance
        t = samples(ctx.index.table)
        splits = ordered_splits(ctx, t)
        if "train" not in splits:
            return
        train = class_counts(t, "train")
        results: dict[str, Any] = {}
        for split in splits:
            if split in ("train", ""):
                continue
            other = class_counts(t, split)
            shared = sorted(set(train) & set(other))
            if len(shared) < 2:
                continue
            a = np.array([train[c] for c in shared], dtype=float)
            b = np.array([other[c] for c in shared], dtype=float)
            chi2, p, dof, expected = chi2_independence(np.vstack([a, b]))
            pa, pb = a / a.sum(), b / b.sum()
            tvd = 0.5 * float(np.abs(pa - pb).sum())
            diffs = {c: float(pb[i] - pa[i]) for i, c in enumerate(shared)}
            res = {
                "split": split, "classes": shared,
                "train_counts": {c: int(train[c]) for c in shared},
                "counts": {c: int(other[c]) for c in shared},
                "train_shares": {c: float(pa[i]) for i, c in enumerate(shared)},
                "shares": {c: float(pb[i]) for i, c in enumerate(shared)},
                "share_differences": diffs,
                "chi2": float(chi2), "dof": int(dof), "p_value": float(p), "tvd": tvd,
                "min_expected": float(expected.min()),
                "not_shared": sorted(set(train) ^ set(other)),
                "p_threshold": cfg.shift_p_value, "tvd_threshold": cfg.shift_min_tvd,
            }
            results[split] = res
            shifted = p < cfg.shift_p_value and tvd >= cfg.shift_min_tvd
            state(ctx, "split shift", (f"{split}: label proportions differ from train" if shifted else
                                       f"{split}: no shift in label proportions found against train")
                  + f" (TVD {tvd:.3f}, p = {p:.2g}; {LABELS_ONLY})")
            if not shifted:
                continue
            worst = sorted(shared, key=lambda c: -abs(diffs[c]))[:3]
            detail = "; ".join(f"{c!r} {pct(pa[shared.index(c)])} in train vs "
                               f"{pct(pb[shared.index(c)])} in {split}" for c in worst)
            yield self.finding(
                f"Class proportions in {split} differ from train (TVD {tvd:.2f})",
                f"The class mix of {split} differs from train: total variation distance {tvd:.3f} "
                f"(share of samples that would have to change class), chi-square {chi2:.1f} with {dof} "
                f"degrees of freedom, p = {p:.2g}. Largest differences: {detail}. This compares label "
                "proportions only; whether the images themselves differ (content drift) is not tested here.",
                subject=f"split:{split}", evidence=res)
        _section(ctx)["shift"] = results


def _eval_sets(ctx: CheckContext, t: pd.DataFrame) -> list[tuple[str, str, dict[str, int]]]:
    """Evaluation sets: (name, subject, class counts). val and test splits; for a pool (or unsplit
    manifest rows) with batch.validation_split, the simulated tail validation side."""
    out = []
    splits = ordered_splits(ctx, t)
    for split in splits:
        if split in ("val", "test"):
            out.append((split, f"split:{split}", class_counts(t, split)))
    vs = ctx.config.batch.validation_split
    source = tail_source(ctx, t)
    if vs and source is not None and "val" not in splits:
        _, tail, _ = tail_split(t[t["split"] == source], vs)
        counts = tail["label"].value_counts()
        name = f"{split_name(source)} validation_split tail"
        out.append((name, f"split:{split_name(source)}-validation-tail",
                    {str(k): int(counts[k]) for k in sorted(counts.index, key=str)}))
    return out


class SmallSplit(Check):
    """An evaluation split too small for its accuracy to be trusted.

    Why: An accuracy measured on n samples has a 95% confidence half-width of up to 1.96 * sqrt(0.25 /
    n): on 100 validation images that is +/- 9.8 points, so two models 5 points apart are
    indistinguishable and early stopping chases noise. Per class it is worse.
    Fix: Move samples into the split (the evidence gives the size that reaches the bound), merge
    validation and test for model selection with cross-validation, or report the confidence interval
    with every metric.
    Thresholds: balance.max_ci_halfwidth (default 0.05, i.e. +/- 5 accuracy points) for the whole split;
    per-class half-widths are reported in the evidence.
    """

    id = "DSA103"
    name = "balance.small-split"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        bound = ctx.config.balance.max_ci_halfwidth
        t = samples(ctx.index.table)
        table: dict[str, Any] = {}
        need = n_for_halfwidth(bound)
        for name, subject, counts in _eval_sets(ctx, t):
            n = sum(counts.values())
            if n == 0:
                continue
            h = ci_halfwidth(n)
            per_class = {c: {"count": m, "ci_halfwidth": ci_halfwidth(m)} for c, m in counts.items()}
            ev = {"split": name, "total": n, "ci_halfwidth": h, "per_class": per_class,
                  "bound": bound, "needed_for_bound": need, "z": Z95}
            table[name] = ev
            state(ctx, "accuracy interval", f"{name}: an accuracy on its {n} images is good to +/-{100 * h:.1f} "
                  f"points (95%)" + (f", wider than the +/-{100 * bound:.1f} bound; about {need} images reach it"
                                     if h > bound else ""))
            if h <= bound:
                continue
            worst = min(counts, key=lambda c: (counts[c], c))
            yield self.finding(
                f"{name} is too small for a trustworthy accuracy (+/-{100 * h:.1f} points)",
                f"An accuracy measured on the {n} samples of {name} has a 95% confidence half-width of "
                f"up to +/-{100 * h:.1f} points (bound {100 * bound:.1f}); about {need} samples are "
                f"needed for +/-{100 * bound:.1f}. Per class it is wider: {worst!r} has {counts[worst]} "
                f"samples, +/-{100 * ci_halfwidth(counts[worst]):.1f} points.",
                subject=subject, evidence=ev)
        _section(ctx)["confidence"] = table


class ValidationShare(Check):
    """The validation share of the data is outside a sane range.

    Why: With too little validation data (a few percent) its metrics are noise; with too much (half the
    data) the model trains on far less than it could, and a validation_split set by mistake (0.8 for
    0.2) silently trains on a fifth of the data.
    Fix: Move samples between train and validation (a stratified split), or set validation_split to a
    fraction between the bounds.
    Thresholds: balance.val_share_min (default 0.05) and balance.val_share_max (default 0.40), as a share
    of train + val + test samples (or, for batch.validation_split, the fraction itself).
    """

    id = "DSA104"
    name = "balance.validation-share"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        cfg = ctx.config.balance
        lo, hi = cfg.val_share_min, cfg.val_share_max
        t = samples(ctx.index.table)
        sizes = {s: int((t["split"] == s).sum()) for s in ("train", "val", "test")}
        total = sum(sizes.values())
        if sizes["val"] > 0 and total > 0:
            share = sizes["val"] / total
            if not lo <= share <= hi:
                side = "below" if share < lo else "above"
                yield self.finding(
                    f"Validation share {pct(share)} is {side} {pct(lo if share < lo else hi, 0)}",
                    f"val holds {sizes['val']} of {total} samples ({pct(share)}), {side} the sane range "
                    f"{pct(lo, 0)}-{pct(hi, 0)} (train {sizes['train']}, test {sizes['test']}).",
                    subject="split:val",
                    evidence={"share": share, "sizes": sizes, "total": total, "min": lo, "max": hi})
        vs = ctx.config.batch.validation_split
        if vs is not None and not lo <= vs <= hi:
            side = "below" if vs < lo else "above"
            yield self.finding(
                f"validation_split {vs:g} is {side} the sane range",
                f"validation_split = {vs:g} reserves {pct(vs)} of the training data for validation, {side} "
                f"the sane range {pct(lo, 0)}-{pct(hi, 0)}.",
                subject="config:validation_split",
                evidence={"share": vs, "min": lo, "max": hi, "source": "batch.validation_split"})


class EffectiveSize(Check):
    """A class has few distinct source images once duplicates and augmented copies are merged.

    Why: Ten crops of one photo teach a model about as much as one photo. The raw count overstates how
    much data the class has, its class weight and its confidence interval; and copies spread over
    splits leak (see DSA2xx).
    Fix: Collect more distinct images for the class; count and weight by distinct source images; keep
    every copy of a source in one split.
    Thresholds: balance.min_effective_per_class (default 30): a class is reported when duplicates make
    its raw count larger than its effective count and the effective count is below this.
    """

    id = "DSA105"
    name = "balance.effective-size"
    severity = Severity.WARNING
    requires = (Duplicates,)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        eff = ctx.result(Duplicates).effective
        if not eff:
            return
        minimum = ctx.config.balance.min_effective_per_class
        by_split: dict[str, dict[str, dict[str, int]]] = {}
        for key, value in eff.items():
            try:
                split, label = key
                raw, effective = int(value["raw"]), int(value["effective"])
            except (TypeError, ValueError, KeyError):
                continue
            by_split.setdefault(split, {})[str(label)] = {"raw": raw, "effective": effective}
        table: dict[str, Any] = {}
        for split in sorted(by_split, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 9, s)):
            per = dict(sorted(by_split[split].items()))
            raw = {c: v["raw"] for c, v in per.items() if v["raw"] > 0}
            effc = {c: v["effective"] for c, v in per.items() if v["effective"] > 0}
            info = {
                "split": split_name(split),
                "per_class": {c: {**v, "ratio": v["effective"] / v["raw"] if v["raw"] else 1.0}
                              for c, v in per.items()},
                "raw_imbalance_ratio": max(raw.values()) / min(raw.values()) if raw else None,
                "effective_imbalance_ratio": max(effc.values()) / min(effc.values()) if effc else None,
                "effective_class_weights": balanced_weights(effc) if effc else {},
                "min_effective_per_class": minimum,
            }
            table[split_name(split)] = info
            low = [c for c, v in per.items() if v["effective"] < v["raw"] and v["effective"] < minimum]
            if not low:
                continue
            detail = ", ".join(f"{c!r} {per[c]['raw']} files but {per[c]['effective']} distinct"
                               for c in low)
            yield self.finding(
                f"Few distinct images per class in {split_name(split)}",
                f"In {split_name(split)}, duplicates and near-copies inflate class counts: {detail} "
                f"(fewer than {minimum} distinct images). Effective imbalance ratio "
                f"{info['effective_imbalance_ratio']:.2f} vs raw {info['raw_imbalance_ratio']:.2f}.",
                subject=f"split:{split_name(split)}", evidence={**info, "flagged": low})
        _section(ctx)["effective"] = table


CHECKS = [ClassImbalance, SplitShift, SmallSplit, ValidationShare, EffectiveSize]
