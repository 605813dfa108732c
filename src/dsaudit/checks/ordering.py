"""DSA31x: does the order of the files make a head- or tail-based split skewed?

Keras' ``model.fit(x, y, validation_split=f)`` keeps the first floor(n * (1 - f)) samples for training
and validates on the rest, *before* any shuffling (``shuffle=True`` only shuffles the training part).
Arrays built by walking class folders alphabetically are sorted by class, so the tail is the last
class or two. ``image_dataset_from_directory(..., validation_split=f, shuffle=False)`` takes the same
tail (its validation side is int(f * n) samples). The index's "order" column is exactly that walk
order (class folders sorted, files sorted, depth first) or the manifest's row order.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from dsaudit.checks.balance import (class_counts, ordered_splits, pct, samples, split_name,
                                    tail_source, tail_split)
from dsaudit.checks.base import Check, CheckContext
from dsaudit.findings import Finding, Severity
from dsaudit.stats import normal_cdf

DEFAULT_VALIDATION_SPLIT = 0.2
SAFE_LOADERS = (
    "Safe: image_dataset_from_directory(..., validation_split=f, subset='training'/'validation', "
    "shuffle=True, seed=<the same seed for both subsets>) shuffles the file list before splitting; "
    "sklearn.model_selection.train_test_split(..., stratify=labels, shuffle=True); "
    "ImageDataGenerator.flow_from_directory(subset=...) splits inside each class folder. "
    "Unsafe: model.fit(x, y, validation_split=f) on arrays in folder order, and "
    "image_dataset_from_directory(shuffle=False, validation_split=f)."
)


class TailValidationSplit(Check):
    """A tail-based validation split (Keras validation_split) would hold classes unseen in training.

    Why: model.fit(validation_split=f) validates on the last f of the samples before shuffling. When the
    samples are in class-folder order the validation set is one or two classes, some of which the
    model never trained on (or never validates), so val_accuracy is meaningless: often near zero, or
    100% for a class that is only ever predicted.
    Fix: Shuffle the arrays (with a fixed seed) before model.fit, or split with
    image_dataset_from_directory(validation_split=f, subset=..., seed=<same seed>, shuffle=True), or a
    stratified train_test_split. Loaders that are safe are listed in the finding.
    With --keras-split F it checks instead what image_dataset_from_directory(validation_split=F,
    subset="both", seed=--seed) yields (its seeded shuffle, simulated exactly) and reports files the
    loader lists that the scan does not, and back (info).
    Thresholds: batch.validation_split (from --validation-split; without it a pool is simulated at 0.2
    as info) or batch.keras_split (--keras-split); a class is flagged when its share in the tail is
    below batch.tail_min_share (default 0.5) times its share overall (a warning), or when it appears
    only in the tail or the tail holds a single class (an error).
    """

    id = "DSA311"
    name = "order.tail-validation-split"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        cfg = ctx.config.batch
        if ctx.index.loader_split is not None:  # --keras-split: the loader's own shuffled split instead
            yield from self._loader_split(ctx, ctx.index.loader_split)
            return
        t = samples(ctx.index.table)
        source = tail_source(ctx, t)
        if source is None:
            return
        if cfg.validation_split:
            fraction, origin = cfg.validation_split, "config"
        elif source == "" and ctx.index.layout.kind in ("pool", "manifest"):
            fraction, origin = DEFAULT_VALIDATION_SPLIT, "default"
        else:
            return
        part = t[t["split"] == source]
        n = len(part)
        if n == 0:
            return
        head, tail, split_at = tail_split(part, fraction)
        where = split_name(source)
        if split_at == 0 or split_at == n:
            if origin == "config":
                yield self.finding(
                    f"validation_split={fraction:g} leaves one side empty on {n} samples",
                    f"floor({n} * (1 - {fraction:g})) = {split_at}: Keras refuses this split "
                    f"(one side would be empty).", subject=f"split:{where}",
                    evidence={"split": where, "samples": n, "validation_split": fraction,
                              "split_at": split_at})
            return
        counts = class_counts(part, source)
        n_tail = len(tail)
        per_class, only_tail, under = class_mix(counts, head["label"].value_counts().to_dict(),
                                                tail["label"].value_counts().to_dict(), cfg.tail_min_share)
        evidence = {
            "split": where, "samples": n, "validation_split": fraction, "source": origin,
            "split_at": split_at, "train_side": split_at, "validation_tail": n_tail,
            "image_dataset_from_directory_shuffle_false_validation": int(fraction * n),
            "per_class": per_class, "only_in_tail": only_tail, "under_represented_in_tail": under,
            "tail_min_share": cfg.tail_min_share,
            "first_tail_path": str(tail["path"].iloc[0]),
        }
        ctx.sections.setdefault("ordering", {})["tail_split"] = evidence
        if not only_tail and not under:
            return
        in_tail = [c for c, v in per_class.items() if v["validation_tail"]]
        evidence["single_class_tail"] = len(in_tail) == 1 and len(per_class) > 1
        if origin == "default":
            severity = Severity.INFO
        elif only_tail or evidence["single_class_tail"]:
            severity = Severity.ERROR
        else:
            severity = Severity.WARNING
        if evidence["single_class_tail"]:
            tail_mix = f"only {in_tail[0]!r} ({n_tail} samples), so val_accuracy measures one class"
        else:
            tail_mix = ", ".join(f"{c!r} {per_class[c]['validation_tail']}" for c in in_tail)
        msgs = []
        if only_tail:
            msgs.append(f"{', '.join(map(repr, only_tail))} {'appears' if len(only_tail) == 1 else 'appear'} "
                        "only in the validation tail: the "
                        "model never trains on them")
        absent = [c for c in under if per_class[c]["validation_tail"] == 0]
        low = [c for c in under if per_class[c]["validation_tail"] > 0]
        if absent:
            msgs.append(f"{', '.join(map(repr, absent))} never {'appears' if len(absent) == 1 else 'appear'} "
                        f"in validation "
                        f"({', '.join(pct(per_class[c]['share']) for c in absent)} of the data)")
        if low:
            msgs.append(", ".join(f"{c!r} is {pct(per_class[c]['tail_share'])} of validation but "
                                  f"{pct(per_class[c]['share'])} overall" for c in low))
        lead = ("If you train with " if origin == "default" else "With ")
        message = (f"{lead}model.fit(validation_split={fraction:g}) on the {n} samples of {where} in "
                   f"class-folder order, the first {split_at} train and the last {n_tail} validate "
                   f"(from {evidence['first_tail_path']}); validation holds {tail_mix}. "
                   + "; ".join(msgs) + ". " + SAFE_LOADERS)
        if origin == "default":
            message += (f" (Simulated with the default fraction {fraction:g} because this is a single "
                        "pool; pass --validation-split to set it.)")
        yield self.finding(
            f"Tail validation_split={fraction:g} of {where} is skewed by class order",
            message, subject=f"split:{where}", severity=severity, evidence=evidence)

    def _loader_split(self, ctx: CheckContext, loader: Any) -> Iterable[Finding]:
        """The same class-mix test on image_dataset_from_directory's seeded split (--keras-split):
        the shuffle makes a class-order skew unlikely, but a small class can still land wholly on
        one side for a given seed, and the loader lists files the index does not (and back)."""
        where = split_name(loader.source)
        n_train, n_val = len(loader.training), len(loader.validation)
        n = n_train + n_val
        evidence: dict[str, Any] = {"split": where, **loader.to_dict(), "samples": n}
        ctx.sections.setdefault("ordering", {})["keras_split"] = evidence
        if loader.not_indexed or loader.not_listed:
            parts = []
            if loader.not_indexed:
                parts.append(f"it loads {len(loader.not_indexed)} file(s) this scan does not treat as samples "
                             f"(hidden files, or files in folders it walks and the scan does not), e.g. "
                             f"{', '.join(loader.not_indexed[:3])}")
            if loader.not_listed:
                parts.append(f"it never loads {len(loader.not_listed)} indexed file(s) (extensions other than "
                             f".bmp/.gif/.jpeg/.jpg/.png, or inside linked folders), e.g. "
                             f"{', '.join(loader.not_listed[:3])}")
            yield self.finding(
                f"image_dataset_from_directory lists other files than the scan in {where}",
                f"{loader.loader}: " + "; ".join(parts) + ". Its training/validation counts below are the "
                "loader's own.", subject=f"keras-listing:{where}", severity=Severity.INFO,
                paths=(loader.not_indexed + loader.not_listed)[:200], evidence=evidence)
        if n_train == 0 or n_val == 0:
            yield self.finding(
                f"--keras-split {loader.validation_split:g} leaves no training images in {where}",
                f"{loader.loader} on {n} files: int({loader.validation_split:g} * {n}) = {n_val} validation "
                f"files, so training is empty and Keras raises \"No training images found\" (or, with no files "
                "at all, \"No images found\").", subject=f"split:{where}:keras", severity=Severity.ERROR,
                evidence=evidence)
            return
        train_labels = [label for _, label in loader.training]
        val_labels = [label for _, label in loader.validation]
        counts: dict[str, int] = {}
        for label in train_labels + val_labels:
            counts[label] = counts.get(label, 0) + 1
        head: dict[str, int] = {}
        for label in train_labels:
            head[label] = head.get(label, 0) + 1
        tail = {c: counts[c] - head.get(c, 0) for c in counts}
        per_class, only_val, under = class_mix(dict(sorted(counts.items())), head, tail,
                                               ctx.config.batch.tail_min_share)
        evidence.update({"per_class": per_class, "only_in_validation": only_val,
                         "under_represented_in_validation": under,
                         "first_validation_paths": [p for p, _ in loader.validation[:5]]})
        if not only_val and not under:
            return
        in_val = [c for c, v in per_class.items() if v["validation_tail"]]
        single = len(in_val) == 1 and len(per_class) > 1
        severity = Severity.ERROR if only_val or single else Severity.WARNING
        msgs = []
        if only_val:
            msgs.append(f"{', '.join(map(repr, only_val))} only in validation: the model never trains on "
                        f"{'it' if len(only_val) == 1 else 'them'}")
        absent = [c for c in under if per_class[c]["validation_tail"] == 0]
        low = [c for c in under if per_class[c]["validation_tail"] > 0]
        if absent:
            msgs.append(f"{', '.join(map(repr, absent))} never in validation "
                        f"({', '.join(pct(per_class[c]['share']) for c in absent)} of the data)")
        if low:
            msgs.append(", ".join(f"{c!r} is {pct(per_class[c]['tail_share'])} of validation but "
                                  f"{pct(per_class[c]['share'])} overall" for c in low))
        yield self.finding(
            f"Keras validation subset of {where} is skewed for seed {loader.seed}",
            f"{loader.loader} on the {n} files of {where}: {n_train} train, {n_val} validate; "
            + "; ".join(msgs) + ". The shuffle is seeded, so every run with this seed gets the same mix. "
            "Another seed, a larger validation_split, or a stratified split (sklearn train_test_split(..., "
            "stratify=labels)) fixes it.", subject=f"split:{where}:keras", severity=severity, evidence=evidence)


def class_mix(counts: dict[str, int], head: dict[str, int], tail: dict[str, int],
              min_share: float) -> tuple[dict[str, Any], list[str], list[str]]:
    """Per class: total, train side, validation side, share overall and in validation, and their
    ratio; with the classes found only in validation and those under `min_share` x their share."""
    n = sum(counts.values())
    n_tail = sum(tail.values())
    per_class: dict[str, Any] = {}
    only_tail, under = [], []
    for c, m in counts.items():
        in_head, in_tail = int(head.get(c, 0)), int(tail.get(c, 0))
        share, tail_share = m / n, in_tail / n_tail
        ratio = tail_share / share
        per_class[c] = {"total": m, "train_side": in_head, "validation_tail": in_tail,
                        "share": share, "tail_share": tail_share, "tail_ratio": ratio}
        if in_head == 0:
            only_tail.append(c)
        elif ratio < min_share:
            under.append(c)
    return per_class, only_tail, under


def runs_test(seq: list[Any]) -> dict[str, Any]:
    """Wald-Wolfowitz runs test generalised to k categories (Barton & David).

    R = number of runs (maximal blocks of equal values). Under a random order, E[R] = n - sum n_c(n_c-1)/n
    and Var[R] = (sum n_c^2 (sum n_c^2 + n(n+1)) - 2n sum n_c^3 - n^3) / (n^2 (n-1)). Returns R, E, Var,
    z and the one-sided p-value of as few runs as observed (clustering)."""
    n = len(seq)
    runs = 1 + sum(1 for a, b in zip(seq, seq[1:]) if a != b) if n else 0
    counts = np.array(list(pd.Series(seq).value_counts()), dtype=float)
    s2, s3 = float((counts ** 2).sum()), float((counts ** 3).sum())
    expected = n - float((counts * (counts - 1)).sum()) / n if n else 0.0
    var = (s2 * (s2 + n * (n + 1)) - 2 * n * s3 - n ** 3) / (n * n * (n - 1)) if n > 1 else 0.0
    z = (runs - expected) / math.sqrt(var) if var > 0 else 0.0
    p = normal_cdf(z) if var > 0 else 1.0
    return {"n": n, "runs": runs, "expected_runs": expected, "variance": var, "z": z, "p_value": p,
            "categories": int(len(counts)), "min_runs": int(len(counts))}


class ManifestClustered(Check):
    """Rows of a CSV manifest are sorted or clustered by label (or group).

    Why: Any split that takes the head or tail of the file (Keras validation_split, `df[:n]`, a
    "first 80% for training" script) then gets a skewed class mix, exactly like class-folder order.
    Fix: Shuffle the rows (with a fixed seed) before writing the manifest, or split with a stratified,
    shuffling splitter instead of by position.
    Thresholds: a runs test with one-sided p-value below batch.runs_p_value (default 0.001) and at most
    batch.runs_max_ratio (default 0.5) times the runs expected in a random order. Clustering by label is
    a warning, by group an info (grouped rows are common and harmless unless split by position).
    """

    id = "DSA312"
    name = "order.manifest-clustered"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        layout = ctx.index.layout
        if layout.kind != "manifest" or str(layout.manifest or "").startswith("python:"):
            return  # loader objects (scan_datasets): their order is the loader's, not rows split by position
        cfg = ctx.config.batch
        t = samples(ctx.index.table)
        results: dict[str, Any] = {}
        for split in ordered_splits(ctx, t):
            part = t[t["split"] == split].sort_values("order", kind="stable")
            for column, severity in (("label", Severity.WARNING), ("group", Severity.INFO)):
                seq = [str(v) for v in part[column].tolist()]
                if column == "group" and (not seq or any(v == "" for v in seq)):
                    continue
                if len(seq) < 10 or len(set(seq)) < 2:
                    continue
                res = runs_test(seq)
                ratio = res["runs"] / res["expected_runs"] if res["expected_runs"] else 1.0
                res.update({"split": split_name(split), "column": column, "runs_ratio": ratio,
                            "sorted": seq == sorted(seq),
                            "contiguous_blocks": res["runs"] == res["categories"],
                            "p_threshold": cfg.runs_p_value, "max_ratio": cfg.runs_max_ratio})
                results[f"{split_name(split)}:{column}"] = res
                if not (res["p_value"] < cfg.runs_p_value and ratio <= cfg.runs_max_ratio):
                    continue
                how = ("sorted by" if res["sorted"] else
                       "in one contiguous block per value of" if res["contiguous_blocks"] else
                       "clustered by")
                yield self.finding(
                    f"Manifest rows of {split_name(split)} are {how} {column}",
                    f"The {res['n']} manifest rows of {split_name(split)} are {how} {column}: {res['runs']} "
                    f"runs where a random order gives about {res['expected_runs']:.1f} (z = "
                    f"{res['z']:.1f}, p = {res['p_value']:.2g}). A split that takes the head or tail of "
                    f"the file (validation_split, df[:n]) gets a skewed {column} mix.",
                    subject=f"split:{split_name(split)}:{column}", severity=severity, evidence=res)
        if results:
            ctx.sections.setdefault("ordering", {})["manifest_runs"] = results


CHECKS = [TailValidationSplit, ManifestClustered]
