"""DSA42x-43x: images unlike their class (outliers) and images whose label looks wrong.

Both read the compact content descriptors of the index (dsaudit.content.analysis) and their nearest
neighbours (dsaudit.content.neighbours); no image is opened. The label checks give a ranked list
with a suggested label and a score, never a verdict: a neighbour vote or a model's doubt says where
to look, a person decides. With probe.mode = on, DSA431 also ranks by confident learning (cleanlab)
on out-of-fold probabilities of the probe CNN trained in cross-validation.
"""

from __future__ import annotations

import importlib.util
import traceback
from typing import Any, Iterable

import numpy as np

from dsaudit.checks.balance import pct, split_name
from dsaudit.checks.base import Check, CheckContext
from dsaudit.content.analysis import ContentAnalysis, content_analysis, histogram
from dsaudit.content.label_neighbours import NeighbourLabelRanking
from dsaudit.content.neighbours import knn
from dsaudit.findings import Finding, Severity

MIN_CLASS = 10        # images a class needs before its members can be called outliers


def outlier_scores(a: ContentAnalysis, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ratio, distance): each image's mean Euclidean distance to its k nearest images of the same
    class, over that class's median (nan for classes below MIN_CLASS), and the distance itself."""
    labels = a.frame["label"].to_numpy()
    n = len(labels)
    within = np.full(n, np.nan)
    ratio = np.full(n, np.nan)
    for c in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == c)
        if len(rows) < MIN_CLASS:
            continue
        _, dist = knn(a.descriptor[rows], k)
        d = np.nanmean(dist, axis=1)
        within[rows] = d
        med = float(np.median(d))
        ratio[rows] = d / max(med, 1e-6)
    return ratio, within


class Outliers(Check):
    """Images unlike the rest of their class (far from their nearest neighbours in content).

    Why: An image far from every other image of its class is often a wrong file (a screenshot, a
    different modality, a corrupted render), a mislabelled one, or a rare case worth knowing about;
    in a test split, a handful of such images can move the score.
    Fix: Look at the listed images (most unusual first): remove what does not belong, relabel what is
    in the wrong class, and keep genuine rare cases (consider collecting more like them).
    Thresholds: mean Euclidean distance to the content.outlier_k (default 5) nearest images of the same
    class in the content-descriptor space at least content.outlier_ratio (default 2) times the class's
    median of that distance (classes of at least 10 images).
    """

    id = "DSA420"
    name = "content.outliers"
    severity = Severity.INFO
    family = "outliers"
    requires = (ContentAnalysis,)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        a = content_analysis(ctx)
        if len(a) < MIN_CLASS or a.descriptor.shape[1] == 0:
            return
        cfg = ctx.config.content
        ratio, within = outlier_scores(a, int(cfg.outlier_k))
        f = a.frame
        mask = np.nan_to_num(ratio, nan=0.0) >= cfg.outlier_ratio
        section = ctx.sections.setdefault("content", {})
        section["outliers"] = {"flagged": int(mask.sum()), "images": int(len(f)), "rate": float(mask.mean()),
                               "histogram": histogram(np.nan_to_num(ratio, nan=1.0),
                                                      np.where(mask, "flagged", "other"))}
        if not mask.any():
            return
        idx = np.flatnonzero(mask)
        idx = idx[np.argsort(-ratio[idx], kind="stable")]
        shown = idx[:cfg.max_listed]
        # how far the listed images are from the whole dataset, against the typical within-class
        # distance: a k-NN of the listed images only (one over all images costs as much as DSA430's)
        _, dist_all = knn(a.descriptor, int(cfg.outlier_k), rows=shown)
        ratio_all = np.nanmean(dist_all, axis=1) / max(float(np.nanmedian(within)), 1e-6)
        listed = [{"path": f["path"].iat[i], "split": split_name(f["split"].iat[i]), "label": f["label"].iat[i],
                   "ratio_to_class": round(float(ratio[i]), 3), "ratio_to_dataset": round(float(r), 3)}
                  for i, r in zip(shown, ratio_all)]
        labels = f["label"].to_numpy()
        per_class = {c: {"flagged": int((mask & (labels == c)).sum()), "images": int((labels == c).sum())}
                     for c in sorted(set(labels[mask].tolist()))}
        yield self.finding(
            f"{mask.sum()} images unlike the rest of their class ({pct(mask.mean(), 2 if mask.mean() < 0.01 else 1)})",
            f"{mask.sum()} of {len(f)} images are at least {cfg.outlier_ratio:g}x further from their "
            f"{cfg.outlier_k} nearest images of the same class than is typical for that class; the most "
            f"unusual: " + ", ".join(f"{e['path']} ({e['ratio_to_class']:.1f}x)" for e in listed[:3]) + ".",
            paths=[f["path"].iat[i] for i in idx], subject="content:outliers",
            evidence={"flagged": int(mask.sum()), "images": int(len(f)), "per_class": per_class,
                      "images_flagged": listed, "k": int(cfg.outlier_k), "ratio": cfg.outlier_ratio})


class NeighbourLabelErrors(Check):
    """Images whose nearest neighbours in content carry another label (possible label errors).

    Why: A mislabelled image teaches the model the wrong thing and, in a test split, counts a right
    answer as wrong. An image whose closest look-alikes nearly all belong to one other class is a
    cheap, always-available hint; it is a ranking of where to look, not a verdict (classes that look
    alike in colour and layout also vote this way).
    Fix: Review the listed images (highest score first) against their suggested label and correct the
    ones that are wrong; with the probe available, DSA431 (probe.mode = on) ranks by a trained model.
    Thresholds: at least content.label_min_share (default 0.8) of the content.label_k (default 10)
    nearest images (Euclidean, content descriptors, whole dataset) carry one and the same other label.
    The neighbours are exact up to content.label_knn_max_pairs (default 4e8) image pairs, above it
    approximate (a faiss inverted-file index comparing about that many pairs); the report then gives
    the share of the exact neighbours kept, measured on a sample of images.
    """

    id = "DSA430"
    name = "labels.neighbour-disagreement"
    severity = Severity.INFO
    family = "labels"
    requires = (ContentAnalysis, NeighbourLabelRanking)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        rank = ctx.result(NeighbourLabelRanking)
        if not rank.k:
            return
        f = ctx.result(ContentAnalysis).frame
        cfg = ctx.config.content
        approx = rank.approximate
        mask = rank.share >= cfg.label_min_share
        order = [i for i in rank.order if mask[i]]
        section = {"flagged": int(mask.sum()), "images": int(len(f)), "k": int(cfg.label_k),
                   "histogram": histogram(rank.share, np.where(mask, "flagged", "other"), bins=int(cfg.label_k))}
        if approx is not None:
            section["approximate"] = approx.as_dict()
        ctx.sections.setdefault("content", {})["label_neighbours"] = section
        if not order:
            return
        listed = [{"path": f["path"].iat[i], "split": split_name(f["split"].iat[i]), "label": f["label"].iat[i],
                   "suggested": str(rank.suggested[i]), "score": round(float(rank.share[i]), 3)}
                  for i in order[:cfg.max_listed]]
        yield self.finding(
            f"{len(order)} images whose nearest look-alikes carry another label",
            f"For {len(order)} of {len(f)} images, at least {pct(cfg.label_min_share, 0)} of the "
            f"{cfg.label_k} most similar images carry one other label: possible label errors, to review "
            f"(a ranking, not a verdict). First: " + ", ".join(
                f"{e['path']} ({e['label']!r}, neighbours say {e['suggested']!r})" for e in listed[:3]) + "."
            + (f" The neighbours are approximate above {cfg.label_knn_max_pairs:.0e} image pairs: "
               f"{pct(approx.recall)} of the exact ones kept on a sample of {approx.sample} images."
               if approx is not None else ""),
            paths=[f["path"].iat[i] for i in order], subject="labels:neighbours",
            evidence={"flagged": len(order), "images": int(len(f)), "k": int(cfg.label_k),
                      "min_share": cfg.label_min_share, "ranked": listed,
                      **({"approximate": approx.as_dict()} if approx is not None else {})})


def cleanlab_available() -> bool:
    return importlib.util.find_spec("cleanlab") is not None


def probe_ranking(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Confident learning (cleanlab.filter.find_label_issues, ranked by self-confidence) on
    out-of-fold probabilities: indices of likely label errors, most likely first."""
    from cleanlab.filter import find_label_issues

    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    return {"ranked": np.asarray(ranked, dtype=np.int64),
            "self_confidence": probs[np.arange(len(labels)), labels]}


class ProbeLabelErrors(Check):
    """Likely label errors ranked by confident learning on a cross-validated probe (cleanlab).

    Why: A model trained without an image that still confidently predicts another class for it is
    the strongest cheap evidence of a label error; confident learning (Northcutt et al.) estimates per
    class how often labels are wrong and ranks the images most likely to be. A ranking with a suggested
    label and a score, never a verdict.
    Fix: Review the listed images, highest score first, and correct the labels that are wrong (then
    rescan: the ranking changes once the worst ones are fixed).
    Thresholds: runs with probe.mode = on when TensorFlow and cleanlab are installed
    (pip install 'dsaudit[probe]'), within content.label_probe_budget seconds (default 300) on at most
    probe.max_train images of the train split; lists what cleanlab.filter.find_label_issues returns,
    ranked by self-confidence (score = 1 - predicted probability of the given label).
    """

    id = "DSA431"
    name = "labels.confident-learning"
    severity = Severity.INFO
    family = "labels"
    requires = (ContentAnalysis,)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        from dsaudit.probe import tensorflow_available

        cfg = ctx.config.content
        section = ctx.sections.setdefault("content", {})
        reason = ""
        if ctx.config.probe.mode != "on":
            reason = "runs with the probe only (--probe / probe.mode = on)"
        elif cfg.label_probe_budget <= 0:
            reason = "content.label_probe_budget is zero"
        elif not tensorflow_available() or not cleanlab_available():
            reason = "needs TensorFlow and cleanlab (pip install 'dsaudit[probe]')"
        a = content_analysis(ctx)
        f = a.frame
        rows = np.flatnonzero((f["split"] == "train").to_numpy()) if (f["split"] == "train").any() \
            else np.arange(len(f))
        labels_all = f["label"].to_numpy()[rows]
        classes, counts = np.unique(labels_all, return_counts=True)
        if not reason and (len(classes) < 2 or counts.min() < 10):
            reason = "needs at least two classes of at least 10 training images"
        if reason:
            section["label_probe"] = {"status": "skipped", "reason": reason}
            return
        rng = np.random.default_rng(int(ctx.config.seed))
        cap = int(ctx.config.probe.max_train)
        if len(rows) > cap:
            rows = np.sort(rng.choice(rows, cap, replace=False))
        labels = np.searchsorted(classes, f["label"].to_numpy()[rows])
        from dsaudit.content.oof import FOLDS, out_of_fold

        if ctx.notify:
            ctx.notify(f"training the probe CNN in {FOLDS} folds to rank likely label errors "
                       f"(up to {cfg.label_probe_budget:.0f} s; --no-probe skips it)")

        paths = [str(p) for p in f["abs_path"].to_numpy()[rows]]
        try:
            res = out_of_fold(paths, labels, len(classes), float(cfg.label_probe_budget),
                              int(ctx.config.seed), ctx.config.resolved_jobs(), int(ctx.config.probe.max_epochs))
        except Exception as exc:  # a failed probe is a result, never a crashed scan
            section["label_probe"] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                      "traceback": traceback.format_exc(limit=5)}
            return
        probs = res.pop("probabilities")
        done = np.flatnonzero(np.isfinite(probs[:, 0]))
        p = probs[done].astype(np.float64)
        p /= p.sum(axis=1, keepdims=True)
        ranking = probe_ranking(p, labels[done])
        ranked = done[ranking["ranked"]]
        ctx.artifacts["content.label_ranking.probe"] = {"rows": rows, "probabilities": probs, "ranked": ranked,
                                                         "classes": classes}
        section["label_probe"] = {"status": "ran", **res, "images": int(len(done)), "flagged": int(len(ranked))}
        if not len(ranked):
            return
        listed = []
        for i in ranked[:cfg.max_listed]:
            r = rows[i]
            listed.append({"path": f["path"].iat[r], "label": f["label"].iat[r],
                           "suggested": str(classes[int(np.nanargmax(probs[i]))]),
                           "score": round(1.0 - float(probs[i, labels[i]]), 4)})
        yield self.finding(
            f"{len(ranked)} likely label errors by confident learning",
            f"Confident learning (cleanlab) on out-of-fold probabilities of the probe CNN ({res['folds']} folds, "
            f"{res['epochs']} epochs, out-of-fold accuracy {pct(res['accuracy'])}) ranks {len(ranked)} of "
            f"{len(done)} training images as likely mislabelled (a ranking, not a verdict). First: "
            + ", ".join(f"{e['path']} ({e['label']!r}, model says {e['suggested']!r})" for e in listed[:3]) + ".",
            paths=[f["path"].iat[rows[i]] for i in ranked], subject="labels:confident-learning",
            evidence={"flagged": int(len(ranked)), "images": int(len(done)), "ranked": listed,
                      **res})


CHECKS = [Outliers, NeighbourLabelErrors, ProbeLabelErrors]
