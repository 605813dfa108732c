"""DSA12x-13x: file properties that give the label away, and augmented files saved into the dataset.

Association of a property with the label, per split, on a property x class table of counts:
chi-square test of independence (p-value) and Cramér's V = sqrt(chi2 / (n * (min(r, k) - 1))). With
many levels and few samples V is biased upwards, so the threshold is applied to the bias-corrected V of
Bergsma (2013): phi2~ = max(0, chi2/n - (k-1)(r-1)/(n-1)), r~ = r - (r-1)^2/(n-1), k~ = k - (k-1)^2/(n-1),
V~ = sqrt(phi2~ / min(r~ - 1, k~ - 1)). Both are reported.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any, Iterable

import numpy as np
import pandas as pd

from dsaudit.checks.balance import ordered_splits, pct, samples, split_name
from dsaudit.checks.base import Check, CheckContext
from dsaudit.findings import Finding, Severity
from dsaudit.stats import chi2_independence

MIN_LEVEL_COUNT = 5     # property levels rarer than this are merged into "other"
MAX_EXACT_SIZES = 8     # up to this many distinct WxH sizes are kept as they are, else area quartiles
QUANTILE_BINS = 4
MIN_SAMPLES = 10


def cramers_v(table: np.ndarray) -> dict[str, float]:
    """Chi-square test of independence plus Cramér's V and its bias-corrected form (Bergsma 2013)."""
    table = np.asarray(table, dtype=float)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    r, k = table.shape
    n = float(table.sum())
    if r < 2 or k < 2 or n < 2:
        return {"chi2": 0.0, "p_value": 1.0, "dof": 0, "cramers_v": 0.0, "cramers_v_corrected": 0.0}
    chi2, p, dof, _ = chi2_independence(table)
    v = math.sqrt(chi2 / (n * (min(r, k) - 1)))
    phi2 = chi2 / n
    phi2c = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    rc = r - (r - 1) ** 2 / (n - 1)
    kc = k - (k - 1) ** 2 / (n - 1)
    denom = min(rc - 1, kc - 1)
    vc = math.sqrt(phi2c / denom) if denom > 0 else 0.0
    return {"chi2": float(chi2), "p_value": float(p), "dof": int(dof), "cramers_v": v,
            "cramers_v_corrected": vc}


def _human_bytes(x: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(x) < 1024 or unit == "GB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024.0
    return f"{x:.1f} GB"


def _quantile_levels(values: pd.Series, fmt) -> pd.Series | None:
    """Quartile buckets of a numeric series, labelled by their value ranges; None if constant."""
    if values.nunique() < 2:
        return None
    try:
        cats = pd.qcut(values.astype(float), q=QUANTILE_BINS, duplicates="drop")
    except ValueError:
        return None
    if cats.cat.categories.size < 2:
        return None
    names = {iv: f"{fmt(max(iv.left, float(values.min())))}-{fmt(iv.right)}" for iv in cats.cat.categories}
    order = {iv: i for i, iv in enumerate(cats.cat.categories)}
    return cats.map(lambda iv: f"{order[iv] + 1}: {names[iv]}").astype(str)


def property_levels(part: pd.DataFrame) -> dict[str, pd.Series]:
    """For each tested property, one level (a string) per row of `part`."""
    out: dict[str, pd.Series] = {}
    fmt = part["format"].astype(str).where(part["format"].astype(str) != "",
                                           part["ext"].astype(str).str.upper())
    out["format"] = fmt
    out["colour_mode"] = part["mode"].astype(str)
    dims = part["width"].astype(int).astype(str) + "x" + part["height"].astype(int).astype(str)
    if dims.nunique() <= MAX_EXACT_SIZES:
        out["dimensions"] = dims
    else:
        area = part["width"].astype(float) * part["height"].astype(float)
        lv = _quantile_levels(area, lambda a: f"{math.sqrt(a):.0f}px")
        if lv is not None:
            out["dimensions"] = lv.map(lambda s: s + " (sqrt of area)")
    lv = _quantile_levels(part["bytes"], _human_bytes)
    if lv is not None:
        out["file_size"] = lv
    return out


def _merge_rare(levels: pd.Series) -> pd.Series:
    counts = levels.value_counts()
    rare = set(counts[counts < MIN_LEVEL_COUNT].index)
    if rare and len(rare) < len(counts):
        return levels.where(~levels.isin(rare), "other")
    return levels


class PropertyPredictsLabel(Check):
    """A file property (format, colour mode, image size, file size) predicts the label.

    Why: If one class is mostly PNG and the other JPEG, one greyscale and the other RGB, or the classes
    come at different resolutions, a model can learn the compression artefacts, channel statistics or
    resize blur instead of the content, score well on a split with the same bias and fail in use.
    Fix: Re-encode every image to one format, colour mode and size when preparing the dataset (or do it
    in the loader for training and deployment alike), and check that the sources of each class do not
    differ systematically.
    Thresholds: bias-corrected Cramér's V at least balance.shortcut_min_cramers_v (default 0.3, a
    medium-to-large effect) and a chi-square p-value below balance.shortcut_p_value (default 0.001),
    per split. Format, colour mode and dimensions are warnings; file size is info, because compressed
    size also follows the content itself.
    """

    id = "DSA120"
    name = "shortcut.property-predicts-label"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        cfg = ctx.config.balance
        t = samples(ctx.index.table)
        results: dict[str, Any] = {}
        for split in ordered_splits(ctx, t):
            part = t[t["split"] == split]
            if len(part) < MIN_SAMPLES or part["label"].nunique() < 2:
                continue
            labels = part["label"].astype(str)
            for prop, levels in property_levels(part).items():
                levels = _merge_rare(levels)
                if levels.nunique() < 2:
                    continue
                ct = pd.crosstab(levels, labels)
                stats = cramers_v(ct.to_numpy())
                table = {str(lv): {str(c): int(ct.loc[lv, c]) for c in ct.columns} for lv in ct.index}
                per_class = {}
                for c in ct.columns:
                    col = ct[c]
                    top = col.idxmax()
                    per_class[str(c)] = {"top_level": str(top), "top_share": float(col.max() / col.sum()),
                                         "count": int(col.sum())}
                n = int(len(part))
                prop_acc = float(ct.max(axis=1).sum() / n)   # predict each level's majority class
                base_acc = float(ct.sum(axis=0).max() / n)   # always predict the largest class
                ev = {"split": split_name(split), "property": prop, "samples": n, **stats,
                      "property_only_accuracy": prop_acc, "majority_baseline_accuracy": base_acc,
                  "table": table, "per_class": per_class,
                      "min_cramers_v": cfg.shortcut_min_cramers_v, "p_threshold": cfg.shortcut_p_value}
                results[f"{split_name(split)}:{prop}"] = ev
                if not (stats["cramers_v_corrected"] >= cfg.shortcut_min_cramers_v
                        and stats["p_value"] < cfg.shortcut_p_value):
                    continue
                detail = "; ".join(f"{c!r} is {pct(v['top_share'])} {v['top_level']}"
                                   for c, v in per_class.items())
                pretty = prop.replace("_", " ")
                note = ""
                severity = None
                if prop == "file_size":
                    # compressed size also follows content (detail, background), so this is a hint
                    severity = Severity.INFO
                    note = (" File size also follows image content (detail, empty background), so check "
                            "whether the classes come from different sources or compression settings.")
                yield self.finding(
                    f"{pretty.capitalize()} predicts the label in {split_name(split)} "
                    f"(Cramér's V {stats['cramers_v']:.2f})",
                    f"In {split_name(split)}, the {pretty} of a file is strongly associated with its class: "
                    f"Cramér's V {stats['cramers_v']:.2f} (bias-corrected {stats['cramers_v_corrected']:.2f}), "
                    f"chi-square {stats['chi2']:.1f}, p = {stats['p_value']:.2g}, on {len(part)} images. "
                    f"{detail}. The {pretty} alone predicts the class with {pct(prop_acc)} accuracy "
                    f"(always guessing the largest class: {pct(base_acc)}); a model can learn the "
                    f"{pretty} instead of the content." + note,
                    subject=f"split:{split_name(split)}:{prop}", evidence=ev, severity=severity)
        ctx.sections.setdefault("shortcuts", {})["associations"] = results


_IMG_EXT = r"(?:png|jpe?g|bmp|gif|tiff?|pdf|webp)"
KERAS_RE = re.compile(rf"^(?P<prefix>.*)_(?P<index>\d+)_(?P<hash>[1-9]\d{{4,6}})\.{_IMG_EXT}$", re.I)
DATE_RE = re.compile(r"^(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])$")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
AUGMENTOR_RE = re.compile(rf"(?:_original_.+_{UUID}|^_groundtruth_\(\d+\)_.+_{UUID})\.\w+$", re.I)
ROBOFLOW_RE = re.compile(r"^(?P<stem>.+)_(?:jpe?g|png|bmp|webp|tiff?)\.rf\.[0-9a-f]{32}\.\w+$", re.I)
AUG_DIR_RE = re.compile(r"^aug(?:mented|mentations?|ment|s)?(?:[_\-. ].*|\d.*)?$", re.I)
AUG_TOKEN_RE = re.compile(r"(?:^|[_\-. ])aug(?:mented|mentation|ment)?(?:[_\-. ]|\d|$)", re.I)

PATTERNS = {
    "keras-save-to-dir": "Keras ImageDataGenerator.flow(..., save_to_dir=...): "
                         "{prefix}_{index}_{random 0-9999999}.{format}",
    "augmentor": "Augmentor Pipeline.sample(): {class}_original_{file}_{uuid4}.{format}",
    "roboflow-augmented": "Roboflow export with augmentation: several {stem}_{ext}.rf.{md5}.{ext} "
                          "files from one source stem",
    "aug-name": "file or folder name containing 'aug' / 'augmented' (hand-written augmentation scripts)",
}


def generated_pattern(path: str) -> tuple[str | None, str]:
    """Which augmentation-tool pattern a relative path follows (None if none), and the source key
    for patterns that name their source (the Roboflow stem)."""
    name = path.rsplit("/", 1)[-1]
    m = KERAS_RE.match(name)
    if m and not DATE_RE.match(m.group("index")):
        return "keras-save-to-dir", ""
    if AUGMENTOR_RE.search(name):
        return "augmentor", ""
    m = ROBOFLOW_RE.match(name)
    if m:
        return "roboflow-augmented", m.group("stem")
    stem = name.rsplit(".", 1)[0]
    if AUG_TOKEN_RE.search(stem):
        return "aug-name", ""
    return None, ""


class GeneratedFiles(Check):
    """Files named the way augmentation tools name their output were saved into the dataset.

    Why: Augmented copies of an image inflate its class count, make the class look bigger and more
    varied than it is, and when copies of one source land in different splits, validation measures
    memorisation (leakage).
    Fix: Delete the generated files from the dataset and augment on the fly in the input pipeline
    (Keras preprocessing layers, tf.image, albumentations); if you must keep them, put every copy in the
    same split as its source and count distinct sources, not files.
    Thresholds: none; patterns (in the evidence) are Keras save_to_dir names
    {prefix}_{index}_{hash}.{format} with a 5-7 digit random hash (dates excluded), Augmentor
    {class}_original_{file}_{uuid4}, Roboflow .rf.{md5} names with several versions of one stem, and
    file or folder names with an 'aug'/'augmented' token.
    """

    id = "DSA130"
    name = "shortcut.generated-files"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        t = ctx.index.table
        t = t[t["kind"].isin(["image", "broken-image"])] if "kind" in t.columns else t
        hits: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # split -> (path, label, pattern)
        roboflow: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        kind = ctx.index.layout.kind
        for path, split, label in zip(t["path"], t["split"], t["label"]):
            skip = 0 if kind == "manifest" else (2 if split else 1)
            pattern, key = generated_pattern(str(path))
            if pattern is None:
                # a folder named aug/augmented below the class folder (any folder in a manifest)
                inner = str(path).split("/")[:-1][skip:]
                if any(AUG_DIR_RE.match(p) for p in inner):
                    hits[split].append((str(path), str(label), "aug-name"))
                continue
            if pattern == "roboflow-augmented":
                roboflow[(split, str(label), key)].append(str(path))
            else:
                hits[split].append((str(path), str(label), pattern))
        for (split, label, _), paths in roboflow.items():
            if len(paths) >= 2:
                hits[split].extend((p, label, "roboflow-augmented") for p in paths)
        sizes = t.groupby(["split", "label"]).size()
        table: dict[str, Any] = {}
        for split in ordered_splits(ctx, t):
            found = hits.get(split)
            if not found:
                continue
            per_class: dict[str, dict[str, Any]] = {}
            for path, label, pattern in found:
                pc = per_class.setdefault(label, {"files": 0, "patterns": {}, "class_files": 0})
                pc["files"] += 1
                pc["patterns"][pattern] = pc["patterns"].get(pattern, 0) + 1
            for label, pc in per_class.items():
                pc["class_files"] = int(sizes.get((split, label), 0))
                pc["share"] = pc["files"] / pc["class_files"] if pc["class_files"] else 0.0
            per_class = dict(sorted(per_class.items()))
            patterns = sorted({p for _, _, p in found})
            ev = {"split": split_name(split), "files": len(found), "per_class": per_class,
                  "patterns": {p: PATTERNS[p] for p in patterns},
                  "examples": [p for p, _, _ in found[:10]]}
            table[split_name(split)] = ev
            detail = ", ".join(f"{c!r} {v['files']} of {v['class_files']} ({pct(v['share'])})"
                               for c, v in per_class.items())
            yield self.finding(
                f"{len(found)} generated (augmented) files in {split_name(split)}",
                f"{len(found)} files in {split_name(split)} are named like augmentation-tool output "
                f"({', '.join(patterns)}): {detail}. They inflate class counts and, if their sources "
                f"are in another split, leak into it.",
                paths=sorted(p for p, _, _ in found), subject=f"split:{split_name(split)}", evidence=ev)
        if table:
            ctx.sections.setdefault("shortcuts", {})["generated"] = table


CHECKS = [PropertyPredictsLabel, GeneratedFiles]
