"""DSA41x: the pixels of an evaluation split differ from the training split's (distribution drift).

The label-proportion test (DSA102) says nothing about the images themselves. Here every evaluation
split is compared with train twice: per image property (DSA410: brightness, contrast, sharpness,
entropy, colour, size, file size per pixel, format), with a two-sample test and its effect size; and as
a whole (DSA411), by a domain classifier that tries to tell the two splits apart from the compact
content descriptors. Its cross-validated ROC AUC is about 0.5 when the splits come from one source
and far above when a model can tell them apart (a test split from another scanner, another resize,
another compression). Both are reported per class too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from dsaudit.analysis import Analysis
from dsaudit.checks.balance import ordered_splits, split_name
from dsaudit.checks.base import Check, CheckContext
from dsaudit.content.analysis import NUMERIC, ContentAnalysis, content_analysis, histogram
from dsaudit.findings import Finding, Severity
from dsaudit.stats import average_ranks, ks_two_sample

MIN_SIDE = 20            # images per split (per class) needed for a comparison
BOOTSTRAP = 200          # resamples of the out-of-fold scores for the AUC interval
FOLDS = 5
EXAMPLES = 12            # example images named per finding
C = 0.1                  # the domain classifier's inverse L2 penalty

WORDS = {  # property -> (what it is, word for "higher", word for "lower")
    "brightness": ("brightness", "brighter", "darker"), "contrast": ("contrast", "more contrasted", "flatter"),
    "sharpness": ("sharpness", "sharper", "blurrier"), "entropy": ("grey entropy", "busier", "plainer"),
    "chroma": ("colourfulness", "more colourful", "greyer"), "p05": ("5th-percentile grey", "lighter shadows",
                                                                    "deeper shadows"),
    "p95": ("95th-percentile grey", "brighter highlights", "dimmer highlights"),
    "mean_r": ("mean red", "redder", "less red"), "mean_g": ("mean green", "greener", "less green"),
    "mean_b": ("mean blue", "bluer", "less blue"), "log_area": ("image area", "larger", "smaller"),
    "aspect": ("aspect ratio", "wider", "taller"),
    "bytes_per_pixel": ("bytes per pixel", "less compressed", "more compressed"),
}


def evaluation_pairs(ctx: CheckContext, a: ContentAnalysis) -> list[str]:
    """Evaluation splits that have a train split to compare with (and enough images)."""
    splits = a.frame["split"].to_numpy()
    if (splits == "train").sum() < MIN_SIDE:
        return []
    return [s for s in ordered_splits(ctx, a.frame) if s not in ("train", "") and (splits == s).sum() >= MIN_SIDE]


def _ks(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if np.ptp(np.concatenate([x, y])) == 0:
        return 0.0, 1.0
    return ks_two_sample(x, y)


def property_drift(a: ContentAnalysis, split: str, cfg: Any) -> dict[str, Any]:
    """Per property: KS distance and p-value train vs `split`, medians, the direction, per class;
    plus format proportions (chi-square, total variation distance). Shared by DSA410 and DSA411."""
    from dsaudit.stats import chi2_independence

    f = a.frame
    tr = (f["split"] == "train").to_numpy()
    ev = (f["split"] == split).to_numpy()
    labels = f["label"].to_numpy()
    out: dict[str, Any] = {}
    classes = [(c, tr & (labels == c), ev & (labels == c))   # the class masks, once for all properties
               for c in sorted(set(pd.unique(labels[tr])) & set(pd.unique(labels[ev])))]
    groups = f["split"].to_numpy()[tr | ev]
    for prop in NUMERIC:
        v = f[prop].to_numpy(dtype=float)
        d, p = _ks(v[tr], v[ev])
        m_tr, m_ev = float(np.median(v[tr])), float(np.median(v[ev]))
        per_class = {}
        for c, in_tr, in_ev in classes:
            x, y = v[in_tr], v[in_ev]
            if len(x) >= MIN_SIDE and len(y) >= MIN_SIDE:
                dc, pc = _ks(x, y)
                per_class[c] = {"ks": round(dc, 4), "p_value": pc}
        out[prop] = {"ks": d, "p_value": p, "median_train": m_tr, "median_eval": m_ev,
                     "drifted": bool(p < cfg.drift_p_value and d >= cfg.drift_min_effect),
                     "direction": WORDS[prop][1 if m_ev > m_tr else 2] if m_ev != m_tr else "",
                     "per_class": per_class,
                     "histogram": histogram(v[tr | ev], groups, bins=24)}
    fmt = f["format"].to_numpy()
    levels = sorted(set(fmt[tr | ev]))
    if len(levels) >= 2:
        table = np.array([[int(((fmt == lv) & tr).sum()), int(((fmt == lv) & ev).sum())] for lv in levels])
        chi2, p, _, _ = chi2_independence(table)
        shares = table / table.sum(axis=0, keepdims=True)
        tvd = float(0.5 * np.abs(shares[:, 0] - shares[:, 1]).sum())
        out["format"] = {"tvd": tvd, "p_value": float(p), "drifted": bool(p < cfg.drift_p_value and
                                                                          tvd >= cfg.drift_min_effect),
                         "train": dict(zip(levels, table[:, 0].tolist())),
                         "eval": dict(zip(levels, table[:, 1].tolist()))}
    return out


@dataclass(frozen=True, eq=False)
class SplitProperties(Analysis):
    """property_drift of every evaluation split (at least MIN_SIDE images, train too) against train,
    computed once for DSA410, which reports it, and DSA411, which explains its drift by it."""

    name = "split_properties"
    requires = (ContentAnalysis,)

    by_split: dict[str, dict[str, Any]]

    @classmethod
    def compute(cls, index: Any, config: Any, results: Mapping[type, Analysis] = {},
                notify: Any = None) -> "SplitProperties":
        a = results[ContentAnalysis]
        splits = a.frame["split"]
        counts = splits.value_counts()
        if len(a) == 0 or counts.get("train", 0) < MIN_SIDE:
            return cls({})
        return cls({s: property_drift(a, s, config.content) for s in sorted(counts.index)
                    if s not in ("train", "") and counts[s] >= MIN_SIDE})


def describe(props: dict[str, Any], split: str) -> str:
    """'test is darker (median brightness 0.21 vs 0.47 in train, KS 0.62), ...' for the drifted ones."""
    parts = []
    ranked = sorted(((k, v) for k, v in props.items() if v.get("drifted") and k != "format"),
                    key=lambda kv: -kv[1]["ks"])
    for prop, v in ranked:
        parts.append(f"{v['direction']} (median {WORDS[prop][0]} {_val(prop, v['median_eval'])} vs "
                     f"{_val(prop, v['median_train'])} in train, KS {v['ks']:.2f})")
    fmt = props.get("format")
    if fmt and fmt["drifted"]:
        parts.append(f"other file formats ({_shares(fmt['eval'])} vs {_shares(fmt['train'])} in train)")
    return f"{split_name(split)} is " + ", ".join(parts) if parts else ""


def _val(prop: str, x: float) -> str:
    if prop == "log_area":
        return f"{np.sqrt(np.exp(x)):.0f} px side"
    return f"{x:.3g}"


def _shares(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v)


class PropertyDrift(Check):
    """Image properties of an evaluation split differ from those of train.

    Why: When the test images are darker, smaller, blurrier or otherwise encoded than the training
    images, the test score measures how the model copes with that shift, not how well it learned the
    task; and a model validated on a drifted split is tuned to the wrong data. A real post asked exactly
    this: "the train and test sets may not come from the same distribution".
    Fix: Draw the splits from the same pool (stratified by source), or if the shift is what deployment
    will see, say so and train on data that covers it; for format or size drift, re-encode every split
    the same way.
    Thresholds: per property, two-sample Kolmogorov-Smirnov p-value below content.drift_p_value
    (default 0.001) and KS distance at least content.drift_min_effect (default 0.1); file formats by a
    chi-square test and total variation distance with the same bounds.
    """

    id = "DSA410"
    name = "drift.property-drift"
    severity = Severity.WARNING
    family = "drift"
    requires = (ContentAnalysis, SplitProperties)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        a = content_analysis(ctx)
        if len(a) == 0:
            return
        section = ctx.sections.setdefault("content", {}).setdefault("drift", {})
        f = a.frame
        for split in evaluation_pairs(ctx, a):
            props = ctx.result(SplitProperties).by_split[split]
            section.setdefault(split_name(split), {})["properties"] = props
            drifted = [k for k, v in props.items() if v["drifted"]]
            if not drifted:
                continue
            top = max((k for k in drifted if k != "format"), key=lambda k: props[k]["ks"], default=None)
            examples: list[str] = []
            if top is not None:
                ev = np.flatnonzero((f["split"] == split).to_numpy())
                v = f[top].to_numpy(dtype=float)[ev]
                sign = -1 if props[top]["median_eval"] > props[top]["median_train"] else 1
                examples = [f["path"].iat[i] for i in ev[np.argsort(sign * v, kind="stable")[:EXAMPLES]]]
            per_class = {c: {k: props[k]["per_class"][c] for k in drifted if c in props[k].get("per_class", {})}
                         for c in sorted(f["label"].unique())}
            per_class = {c: v for c, v in per_class.items() if v}
            yield self.finding(
                f"{split_name(split).capitalize()} images differ from train in {len(drifted)} "
                f"propert{'y' if len(drifted) == 1 else 'ies'}: {', '.join(drifted)}",
                describe(props, split) + ". A score on this split measures the model under that shift; "
                "the examples are the images furthest in the direction of the largest drift.",
                paths=examples, subject=f"drift:{split_name(split)}",
                evidence={"split": split_name(split), "drifted": drifted,
                          "properties": {k: {kk: vv for kk, vv in v.items() if kk != "histogram"}
                                         for k, v in props.items()},
                          "per_class": per_class, "examples": examples})


def domain_classifier(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold decision scores of a logistic regression telling y=1 from y=0 (stratified
    5-fold, standardised inputs, C=0.1): scikit-learn's pipeline, computed in numpy
    (dsaudit.content.classifier: its import cost more than the fits)."""
    from dsaudit.content.classifier import fit_logistic, stratified_folds
    from dsaudit.similarity.neighbors import blas_threads

    scores = np.zeros(len(y), dtype=float)
    n_splits = min(FOLDS, int(np.bincount(y).min()))
    folds = stratified_folds(y, n_splits, seed)
    with blas_threads(1):   # small products: BLAS threads only contend (see content.analysis)
        for fold in range(n_splits):
            held = folds == fold
            scores[held] = fit_logistic(x[~held], y[~held], C).decision(x[held])
    return scores


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC by ranks (Mann-Whitney U / (n1 n0)), ties counted half."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = average_ranks(scores)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auc_interval(scores: np.ndarray, y: np.ndarray, seed: int, n: int = BOOTSTRAP) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the AUC, resampling each class separately. Each
    resample's AUC is Mann-Whitney's U counted over the distinct scores (no sort per resample):
    the same value as ``auc`` of the resampled scores."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    levels, code = np.unique(scores, return_inverse=True)
    vals = []
    for _ in range(n):
        p = np.bincount(code[rng.choice(pos, len(pos))], minlength=len(levels))
        q = np.bincount(code[rng.choice(neg, len(neg))], minlength=len(levels))
        below = np.cumsum(q) - q
        vals.append(float((p * (below + 0.5 * q)).sum() / (len(pos) * len(neg))))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def domain_drift(a: ContentAnalysis, split: str, cfg: Any, seed: int) -> dict[str, Any] | None:
    """Cross-validated AUC of train vs `split` from the content descriptors, its interval, per class
    AUC from the same out-of-fold scores, and the evaluation images that look least like train."""
    f = a.frame
    rng = np.random.default_rng(seed)
    tr = np.flatnonzero((f["split"] == "train").to_numpy())
    ev = np.flatnonzero((f["split"] == split).to_numpy())
    cap = int(cfg.drift_max_samples)
    tr = np.sort(rng.choice(tr, cap, replace=False)) if len(tr) > cap else tr
    ev = np.sort(rng.choice(ev, cap, replace=False)) if len(ev) > cap else ev
    rows = np.concatenate([tr, ev])
    y = np.concatenate([np.zeros(len(tr), int), np.ones(len(ev), int)])
    if min(len(tr), len(ev)) < MIN_SIDE:
        return None
    scores = domain_classifier(a.descriptor[rows], y, seed)
    value = auc(scores, y)
    lo, hi = auc_interval(scores, y, seed)
    labels = f["label"].to_numpy()[rows]
    per_class = {}
    for c in sorted(set(labels.tolist())):
        m = labels == c
        if (y[m] == 1).sum() >= 10 and (y[m] == 0).sum() >= 10:
            per_class[c] = {"auc": round(auc(scores[m], y[m]), 4), "train": int((y[m] == 0).sum()),
                            "eval": int((y[m] == 1).sum())}
    order = np.argsort(-scores[y == 1], kind="stable")
    examples = [f["path"].iat[i] for i in rows[y == 1][order[:EXAMPLES]]]
    return {"auc": value, "interval": [lo, hi], "train_images": int(len(tr)), "eval_images": int(len(ev)),
            "folds": FOLDS, "model": "logistic regression on the content descriptors (standardised, C=0.1)",
            "per_class": per_class, "examples": examples,
            "drifted": bool(value >= cfg.drift_min_auc and lo > 0.5)}


class DomainDrift(Check):
    """A classifier can tell an evaluation split's images from train's (dataset drift).

    Why: If a simple model tells test images from training images by their content descriptors, the
    two splits do not come from one distribution: the test score then measures the model under that
    shift, and whatever tells them apart (a scanner, a resize, a compression) may be what the model
    learned.
    Fix: See which properties differ (DSA410 and the evidence); draw the splits from one pool, or if
    the shift is real, make the training data cover it.
    Thresholds: 5-fold cross-validated ROC AUC of a logistic regression (train vs the split, at most
    content.drift_max_samples images each, default 3000) at least content.drift_min_auc (default 0.6)
    with the lower end of its 95% bootstrap interval above 0.5.
    """

    id = "DSA411"
    name = "drift.domain-classifier"
    severity = Severity.WARNING
    family = "drift"
    requires = (ContentAnalysis, SplitProperties)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        a = content_analysis(ctx)
        if len(a) == 0 or a.descriptor.shape[1] == 0:
            return
        cfg = ctx.config.content
        section = ctx.sections.setdefault("content", {}).setdefault("drift", {})
        for split in evaluation_pairs(ctx, a):
            res = domain_drift(a, split, cfg, int(ctx.config.seed))
            if res is None:
                continue
            section.setdefault(split_name(split), {})["domain"] = res
            if not res["drifted"]:
                continue
            props = ctx.result(SplitProperties).by_split[split]
            why = describe(props, split)
            classes = sorted(res["per_class"].items(), key=lambda kv: -kv[1]["auc"])
            per_class = "; per class " + ", ".join(f"{c!r} {v['auc']:.2f}" for c, v in classes[:5]) if classes else ""
            lo, hi = res["interval"]
            yield self.finding(
                f"A classifier tells {split_name(split)} from train (AUC {res['auc']:.2f})",
                f"A logistic regression on the content descriptors tells {split_name(split)} images from "
                f"training images with a cross-validated AUC of {res['auc']:.2f} (95% interval {lo:.2f}-{hi:.2f}; "
                f"0.5 is chance){per_class}. "
                + (why + "." if why else "No single property differs enough on its own: the difference is in "
                   "the combination (look at the examples).")
                + " The examples are the held-out images that look least like train.",
                paths=res["examples"], subject=f"drift-domain:{split_name(split)}",
                evidence={"split": split_name(split), **res})


CHECKS = [PropertyDrift, DomainDrift]
