"""DSA2xx: duplicates and leakage, judged from the duplicate analysis (``similarity.duplicates``).

The analysis (exact pairs, near-duplicate search and verification, groups, effective counts) is
computed once by the pipeline for every check that requires it; the checks here only turn its
pairs and groups into findings.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np
import pandas as pd

from dsaudit.checks.base import Check, CheckContext
from dsaudit.findings import Finding, Severity
from dsaudit.similarity.duplicates import Duplicates, _components, _rows_per_group
from dsaudit.similarity.matching import describe_approximation, within_search_plan

MAX_EVIDENCE_PAIRS = 50


def _pair_evidence(cols: dict[str, np.ndarray], rows: np.ndarray, names: dict[str, np.ndarray],
                   limit: int = MAX_EVIDENCE_PAIRS) -> list[dict]:
    """The first `limit` pairs of `rows` (positions into the pair columns `cols`) as evidence;
    `names` holds the path, split and label of every table row."""
    out = []
    for j in rows[:limit]:
        a, b = int(cols["a"][j]), int(cols["b"][j])
        distance, similarity = cols["distance"][j], cols["similarity"][j]
        out.append({
            "a": str(names["path"][a]), "b": str(names["path"][b]),
            "split_a": str(names["split"][a]), "split_b": str(names["split"][b]),
            "label_a": str(names["label"][a]), "label_b": str(names["label"][b]),
            "kind": cols["kind"][j],
            "distance": None if distance is None or pd.isna(distance) else float(distance),
            "similarity": None if similarity is None or pd.isna(similarity) else float(similarity),
            "transform": cols["transform"][j] or "",
        })
    return out


def _first(rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """rows with those under `mask` first, each part in its order."""
    return np.concatenate([rows[mask], rows[~mask]])


def _split_counts(group: list[int], splits: np.ndarray) -> dict[str, int]:
    c: dict[str, int] = defaultdict(int)
    for g in group:
        c[str(splits[g]) or "(pool)"] += 1
    return dict(c)


def _paths(names: dict[str, np.ndarray], group: list[int]) -> list[str]:
    return [str(names["path"][g]) for g in group]


def budget_finding(check: Check, title: str, what: str, config, setting: str, cost: str,
                   evidence: dict, subject: str, why_raise: str) -> Finding:
    """The info finding of a k-NN search that its budget (leakage.`setting`, which counts `cost`)
    made approximate or shifted-less: what it did, and how to make it full. Shown without images."""
    budget = getattr(config.leakage, setting)
    return check.finding(
        title, f"{what}. Raise leakage.{setting} (now {budget:g}; it takes {cost}) to search it fully.",
        evidence={**evidence, setting: budget, "display": ""},
        hint=f"Raise leakage.{setting} {why_raise}, or accept that some copies may be missed.",
        subject=subject, severity=Severity.INFO)


# ------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------


class ExactDuplicateLeak(Check):
    """The same file (or the same decoded pixels) is in more than one split.

    Why: a validation or test image that is also in training is not an unseen example; the
    score measured on it is inflated, and the release gate trusts that score.

    Fix: remove the copies from the evaluation split (or from training), then re-measure.
    """

    id = "DSA201"
    name = "leak.exact-duplicate"
    severity = Severity.ERROR
    display = "pairs"
    requires = (Duplicates,)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        res = ctx.result(Duplicates)
        cols, splits, names = res.columns, res.splits, res.names
        exact = np.nonzero(np.isin(cols["kind"], ["bytes", "pixels"]))[0]
        if not len(exact):
            return
        n = len(names["path"])
        groups = _components(res.pairs.iloc[exact], n)
        for group, rows in zip(groups, _rows_per_group(cols["a"][exact], cols["b"][exact], groups, n)):
            if len({splits[g] for g in group}) < 2:
                continue
            rows = _first(exact[rows], cols["cross_split"][exact[rows]].astype(bool))
            counts = _split_counts(group, splits)
            kinds = sorted(set(cols["kind"][rows]))
            what = "identical files" if kinds == ["bytes"] else "identical pixels"
            paths = _paths(names, group)
            yield self.finding(
                f"{len(group)} {what} across splits ({', '.join(f'{s}: {c}' for s, c in counts.items())})",
                f"{paths[0]} and {len(group) - 1} more file(s) hold the same image in "
                f"{len(counts)} splits ({what}).",
                paths=paths,
                evidence={"pairs": _pair_evidence(cols, rows, names), "n_pairs": int(len(rows)),
                          "splits": counts, "kinds": kinds},
            )


class NearDuplicateLeak(Check):
    """A near-duplicate (re-encoded, resized, flipped, rotated, brightened, cropped or shifted copy)
    of an image is in another split.

    Why: augmented or re-saved copies of training images in validation or test inflate the
    measured score just like exact copies do; hashes of the files cannot see them.

    Fix: keep every group of near-duplicates inside one split (assign splits by group), or drop
    the copies from the evaluation split; check the reported pairs and their similarity first.

    Thresholds: leakage.near_threshold (pHash bits for candidates), leakage.verify_threshold
    (aligned similarity that confirms a pair), leakage.knn (neighbours checked per val/test image).
    """

    id = "DSA202"
    name = "leak.near-duplicate"
    severity = Severity.ERROR
    display = "pairs"
    requires = (Duplicates,)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        res = ctx.result(Duplicates)
        cols, splits, names = res.columns, res.splits, res.names
        kept = res.approximate.get("across splits")
        if kept:   # say so when the search across splits was approximate (over leakage.knn_max_pairs)
            yield budget_finding(
                self, "near-duplicate search across splits approximate (over its budget)",
                "The k-NN search of the evaluation images against the training images ran approximately: "
                f"{describe_approximation(kept)}", ctx.config, "knn_max_pairs", "queries x references x shifts",
                {"approximate": kept}, "budget:across", "for an exact search")
        for group, rows in zip(res.components, res.group_rows):
            is_cross_near = (cols["kind"][rows] == "near") & cols["cross_split"][rows].astype(bool)
            cross_near = rows[is_cross_near]
            if not len(cross_near):
                continue
            counts = _split_counts(group, splits)
            best = float(np.max(cols["similarity"][cross_near]))
            tr = sorted({t for t in cols["transform"][cross_near] if t})
            yield self.finding(
                f"near-duplicate group of {len(group)} images across splits "
                f"({', '.join(f'{s}: {c}' for s, c in counts.items())})",
                f"{len(cross_near)} cross-split near-duplicate pair(s), best aligned similarity "
                f"{best:.3f}" + (f"; transforms seen: {', '.join(tr)}" if tr else "") + ".",
                paths=_paths(names, group),
                evidence={"pairs": _pair_evidence(cols, _first(rows, is_cross_near), names),
                          "n_pairs": int(len(rows)), "splits": counts, "max_similarity": best},
            )


class ConflictingLabels(Check):
    """The same or nearly the same image appears under two different classes.

    Why: one of the labels is wrong (or the classes overlap); training on both teaches noise and
    evaluating on either is unreliable.

    Fix: decide the correct class for the image, then keep one copy under it.
    """

    id = "DSA203"
    name = "leak.conflicting-labels"
    severity = Severity.ERROR
    display = "pairs"
    requires = (Duplicates,)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        res = ctx.result(Duplicates)
        cols, labels, splits, names = res.columns, res.labels, res.splits, res.names
        for group, rows in zip(res.components, res.group_rows):
            differs = ~cols["same_label"][rows].astype(bool)
            if not differs.any():
                continue
            labs = sorted({str(labels[g]) for g in group})
            yield self.finding(
                f"{len(group)} copies of one image under {len(labs)} classes ({', '.join(labs)})",
                f"{int(differs.sum())} duplicate pair(s) carry different labels: {', '.join(labs)}.",
                paths=_paths(names, group),
                evidence={"pairs": _pair_evidence(cols, _first(rows, differs), names),
                          "n_pairs": int(len(rows)), "labels": labs, "splits": _split_counts(group, splits)},
            )


class DuplicatesWithinSplit(Check):
    """Duplicate clusters inside one split (augmented or re-saved copies in the same folder).

    Why: copies inflate the apparent size of a class; the model sees the same example several
    times and the effective number of distinct images is lower than the file count.

    Fix: remove the copies (or weight them), and size the class by its effective count.

    Thresholds: leakage.cluster_warn_ratio (warn when the effective/raw count of a class is at or below
    it: at 0.8, when a fifth or more of a class are copies of its other images).
    An info finding says when a split was too large for the full k-NN search inside it
    (leakage.knn_within_max_pairs), so a quiet DSA204 there is weaker evidence.
    """

    id = "DSA204"
    name = "dup.within-split"
    severity = Severity.WARNING
    display = "pairs"
    requires = (Duplicates,)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        res = ctx.result(Duplicates)
        table = ctx.index.table.reset_index(drop=True)
        pairs, splits, eff = res.pairs, res.splits, res.effective
        ratio = ctx.config.leakage.cluster_warn_ratio
        # say so when the search inside a split was cut down by its budget: a quiet DSA204 there
        # only means that no copy close enough for the hashes was found
        if ctx.config.leakage.near and "kind" in table:
            images = table[table["kind"] == "image"]
            for split, count in sorted(images.groupby("split").size().items()):
                plan = within_search_plan(int(count), ctx.config.leakage)
                if plan in ("no-shifts", "approximate"):
                    where = split or "the pool"
                    kept = res.approximate.get(split)
                    if plan == "approximate" and kept:
                        what = "approximately: " + describe_approximation(kept)
                    else:
                        what = "without query shifts (shifted copies are found only when the hashes catch them)"
                    yield budget_finding(
                        self, f"near-duplicate search inside {where} limited by its budget",
                        f"{count} images in {where}: the k-NN search for augmented copies inside it ran {what}",
                        ctx.config, "knn_within_max_pairs", "images^2 x shifts",
                        {"images": int(count), "plan": plan,
                         **({"approximate": kept} if plan == "approximate" and kept else {})},
                        f"budget:{split}", "for a full search (its cost grows with the square of the split size)")
        cols, names = res.columns, res.names
        within = np.nonzero(~cols["cross_split"].astype(bool))[0]
        if not len(within):
            return
        for split in sorted(set(splits[cols["a"][within]])):
            rows = within[splits[cols["a"][within]] == split]
            clusters = _components(pairs.iloc[rows], len(table))
            classes = {lab: v for (s, lab), v in eff.items() if s == split}
            # a fifth or more of a class being copies of others (effective/raw <= 0.8) warns
            low = {lab: v for lab, v in classes.items() if v["raw"] and v["effective"] / v["raw"] <= ratio}
            files = sorted({g for c in clusters for g in c})
            where = split or "the pool"
            sev = Severity.WARNING if low else Severity.INFO
            worst = min(classes.items(), key=lambda kv: kv[1]["effective"] / max(kv[1]["raw"], 1)) if classes else None
            msg = (f"{len(clusters)} duplicate cluster(s) with {len(files)} files in {where}; "
                   + (f"class {worst[0]!r} has {worst[1]['effective']} distinct of {worst[1]['raw']} images"
                      if worst else ""))
            if low:
                msg += f"; at or below the {ratio:.0%} effective/raw threshold: {', '.join(sorted(low))}"
                named = _generated_names(table, split, low)
                if named:   # what DSA130 counts by name, next to what the pixels say
                    msg += " (" + "; ".join(
                        f"{lab!r}: {low[lab]['raw'] - low[lab]['effective']} copies found, {n} file(s) named "
                        f"like augmentation output (DSA130)" for lab, n in sorted(named.items())) + ")"
            yield self.finding(
                f"duplicate clusters inside {where}: {len(files)} files in {len(clusters)} cluster(s)",
                msg + ".",
                paths=_paths(names, files),
                evidence={"pairs": _pair_evidence(cols, rows, names), "n_pairs": int(len(rows)),
                          "clusters": [_paths(names, c) for c in clusters[:100]],
                          "effective_counts": {lab: v for lab, v in sorted(classes.items())},
                          "low_classes": sorted(low)},
                subject=f"split:{split}",
                severity=sev,
            )


def _generated_names(table: pd.DataFrame, split: str, labels: Iterable[str]) -> dict[str, int]:
    """Per class of `split`, how many files DSA130's name patterns call generated (shortcuts.
    generated_pattern), so that DSA204's copies by pixels and DSA130's by name can be read together."""
    from dsaudit.checks.shortcuts import generated_pattern

    out: dict[str, int] = {}
    rows = table[(table["split"].astype(str) == str(split)) & table["label"].astype(str).isin(set(labels))]
    for path, label in zip(rows["path"].astype(str), rows["label"].astype(str)):
        if generated_pattern(path)[0] is not None:
            out[label] = out.get(label, 0) + 1
    return out


class GroupLeak(Check):
    """One group (patient, source, recording) has files on both sides of a split.

    Why: images of one patient or one source share identity, scanner, background or lighting; a
    model can recognise the group instead of the class, and the evaluation rewards it.

    Fix: split by group (every file of a group in one split), e.g. with GroupShuffleSplit.

    Thresholds: groups come from a manifest "group" column or leakage.group_regex
    (--group-regex) applied to the relative path.
    """

    id = "DSA205"
    name = "leak.group"
    severity = Severity.ERROR
    display = "images"

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        table = ctx.index.table.reset_index(drop=True)
        if "group" not in table or not len(table):
            return
        g = table[table["group"].astype(str) != ""]
        for name, grp in g.groupby("group", sort=True):
            splits = sorted(set(grp["split"].astype(str)))
            if len(splits) < 2:
                continue
            counts = grp["split"].astype(str).value_counts().to_dict()
            yield self.finding(
                f"group {name!r} is in {len(splits)} splits ({', '.join(f'{s}: {counts[s]}' for s in splits)})",
                f"{len(grp)} files of group {name!r} are spread over {', '.join(splits)}.",
                paths=[str(p) for p in grp["path"]],
                evidence={"group": str(name), "splits": {s: int(counts[s]) for s in splits}},
                subject=f"group:{name}",
            )


CHECKS = [ExactDuplicateLeak, NearDuplicateLeak, ConflictingLabels, DuplicatesWithinSplit, GroupLeak]
