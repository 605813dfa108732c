"""The duplicate analysis: every pair of files that hold the same or nearly the same image, and the
groups they form, for the DSA2xx checks, the effective class sizes (DSA105) and the probe.

1. exact pairs: the same file bytes (``sha256``) or the same decoded pixels (``pixel_hash``);
2. near-duplicate pairs: ``matching.matches_with_views`` over the views of the decoded images,
   memoised per index fingerprint and matching settings;
3. pairs are joined into groups (connected components), and duplicates inside one (split, label)
   are counted once for the effective counts.

Pairs put the reference first (the earlier split, train first; else the lower table row).
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from dsaudit.analysis import Analysis
from dsaudit.config import AuditConfig, LeakageConfig
from dsaudit.index.dataset import DatasetIndex
from dsaudit.index.hashing import FEATURES_VERSION
from dsaudit.index.memo import stable_key
from dsaudit.similarity.matching import MATCHER_VERSION, describe_transform, matches_with_views
from dsaudit.similarity.neighbors import thread_limit
from dsaudit.similarity.sharded import engine_for
from dsaudit.similarity.views import Views

PAIR_COLUMNS = ("a", "b", "kind", "distance", "similarity", "transform", "cross_split", "same_label")
_PAIR_DTYPES = ("int64", "int64", "object", "float64", "float64", "object", "bool", "bool")


@dataclass(frozen=True, eq=False)
class Duplicates(Analysis):
    """Matched pairs of index rows and the groups they join.

    `pairs` is a DataFrame with PAIR_COLUMNS (a, b: positions into ``index.table``; kind: bytes,
    pixels or near); `columns` holds the same columns as numpy arrays; `components` the groups of
    two or more rows (each sorted, ordered by first row) and `group_rows` the positions of each
    group's pairs; `effective` maps (split, label) to its raw and effective (copies counted once)
    image counts; `names` the path, split and label of every table row; `approximate` maps a split
    (or "across splits") to what its approximate k-NN search kept (ann.Approximation.as_dict), for
    the searches a budget made approximate."""

    name = "duplicates"
    section = "leakage"

    pairs: pd.DataFrame
    columns: dict[str, np.ndarray]
    components: list[list[int]]
    group_rows: list[np.ndarray]
    effective: dict[tuple[str, str], dict[str, int]]
    names: dict[str, np.ndarray]
    splits: np.ndarray
    labels: np.ndarray
    timings: dict[str, float]
    summary: dict[str, Any]
    approximate: dict[str, dict] = dataclasses.field(default_factory=dict)

    @classmethod
    def compute(cls, index: DatasetIndex, config: AuditConfig, results: Mapping[type, Analysis] = {},
                notify: Callable[[str], None] | None = None) -> "Duplicates":
        return analyse(index, config)

    def report_section(self) -> dict[str, Any]:
        return self.summary


def _split_ranks(index: DatasetIndex, splits: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
    """Each split's rank (train first as the reference side, then the layout's order) and each row's."""
    split_names = list(dict.fromkeys(list(index.layout.splits) + sorted(set(splits))))
    order = {s: i for i, s in enumerate(split_names)}
    if "train" in order:  # train is always the reference side
        order = {s: (-1 if s == "train" else i) for s, i in order.items()}
    return order, np.array([order.get(s, 99) for s in splits], dtype=np.int64)


def _exact_rows(table: pd.DataFrame, feats: Mapping[str, np.ndarray], img_pos: np.ndarray,
                split_rank: np.ndarray) -> list[dict[str, Any]]:
    """Pairs of files with the same bytes, then of images with the same decoded pixels."""
    n = len(table)
    rows: list[dict[str, Any]] = []
    exact_bytes: set[tuple[int, int]] = set()
    is_file = (table["bytes"].to_numpy() > 0) & table["kind"].isin(["image", "broken-image"]).to_numpy()
    pos = np.nonzero(is_file)[0]
    sha = table["sha256"].astype(str) if "sha256" in table else pd.Series([""] * n)
    for a, b in _exact_pairs(sha.iloc[pos], pos, split_rank[pos]):
        exact_bytes.add((min(a, b), max(a, b)))
        rows.append(dict(a=a, b=b, kind="bytes", distance=0.0, similarity=1.0, transform=""))
    if "pixel_hash" in feats and len(img_pos):
        ph = feats["pixel_hash"].reshape(n, -1)[:, 0]
        keys = pd.Series([format(int(x), "016x") for x in ph[img_pos]])
        for a, b in _exact_pairs(keys, img_pos, split_rank[img_pos]):
            if (min(a, b), max(a, b)) in exact_bytes or table.at[a, "sha256"] == table.at[b, "sha256"]:
                continue
            rows.append(dict(a=a, b=b, kind="pixels", distance=0.0, similarity=1.0, transform=""))
    return rows


def _near_rows(index: DatasetIndex, config: AuditConfig, table: pd.DataFrame, img_pos: np.ndarray,
               splits: np.ndarray, order: dict[str, int], split_rank: np.ndarray,
               exact: list[dict[str, Any]], near_stats: dict[str, float],
               approximations: dict[str, dict]) -> list[dict[str, Any]]:
    """Near-duplicate pairs of decoded images (not already an exact pair), reference first.
    What each approximate search kept goes into `approximations`, by split name."""
    cfg = config.leakage
    views = Views.of_index(index.features, img_pos)
    ref = order.get("train", None) if len(set(splits[img_pos])) > 1 else None
    if ref is None and len(set(splits[img_pos])) > 1:
        ref = min(order[s] for s in set(splits[img_pos]))
    codes = split_rank[img_pos]

    def search() -> pd.DataFrame:
        # the search stages use a thread pool; with the Dask engine their bulk work runs on the
        # cluster instead (similarity/sharded.py: the same matches)
        with thread_limit(config.resolved_jobs()), engine_for(config.engine, config.scheduler)():
            return matches_with_views(views, codes, cfg, ref_code=ref, timings=near_stats)

    # A rescan of unchanged data reuses the matches: the key holds everything they depend on
    # beyond the index fingerprint (feature and matcher versions, the matching settings).
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("group_regex", "cluster_warn_ratio")}
    key = stable_key(FEATURES_VERSION, MATCHER_VERSION, settings, ref, sorted(order.items()))
    near = index.memoize("leakage.near", key, search)
    if not near_stats:
        near_stats["reused_from_cache"] = 1.0
    code_split = {c: s for s, c in order.items()}
    for where, kept in near.attrs.get("approximate", {}).items():
        name = "across splits" if where == "across" else code_split.get(int(where.split(":")[1]), "")
        approximations[name] = dict(kept)
    sizes = table[["width", "height"]].to_numpy()[img_pos] if len(img_pos) else None
    thumbs = views.thumbs
    if views.has_inner is not None and views.has_inner.any():   # the views that matched, for describe_transform
        thumbs = np.concatenate([thumbs, views.inner[views.has_inner]])
    pixel_keys = {(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in exact}
    rows: list[dict[str, Any]] = []
    for r in near.itertuples(index=False):
        a, b = int(img_pos[r.a]), int(img_pos[r.b])
        if (min(a, b), max(a, b)) in pixel_keys:
            continue
        # the reference (earlier split, else the lower position) first
        swapped = bool(split_rank[b] < split_rank[a] or (split_rank[b] == split_rank[a] and b < a))
        if swapped:
            a, b = b, a
        rows.append(dict(a=a, b=b, kind="near",
                         distance=None if np.isnan(r.distance) else float(r.distance),
                         similarity=round(float(r.similarity), 4),
                         transform=describe_transform(r, thumbs, sizes, swapped)))
    return rows


def _pair_table(rows: list[dict[str, Any]], splits: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    pairs = pd.DataFrame(rows, columns=["a", "b", "kind", "distance", "similarity", "transform"])
    if len(pairs):
        pairs["a"] = pairs["a"].astype(np.int64)
        pairs["b"] = pairs["b"].astype(np.int64)
        pairs["cross_split"] = splits[pairs["a"]] != splits[pairs["b"]]
        pairs["same_label"] = labels[pairs["a"]] == labels[pairs["b"]]
    else:
        pairs = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(PAIR_COLUMNS, _PAIR_DTYPES)})
    return pairs[list(PAIR_COLUMNS)]


def _effective_counts(table: pd.DataFrame, pairs: pd.DataFrame,
                      has: np.ndarray) -> dict[tuple[str, str], dict[str, int]]:
    """Raw and effective image counts per (split, label): duplicates inside one count once."""
    n = len(table)
    uf_in = _UnionFind(n)
    same = pairs[~pairs["cross_split"] & pairs["same_label"]]
    for a, b in zip(same["a"].to_numpy(), same["b"].to_numpy()):
        uf_in.union(int(a), int(b))
    effective: dict[tuple[str, str], dict[str, int]] = {}
    counted = table["kind"].isin(["image"]).to_numpy() | has if n else np.zeros(0, bool)
    for (s, lab), grp in table[counted].groupby(["split", "label"], sort=True):
        pos = grp.index.to_numpy()
        roots = {uf_in.find(int(p)) for p in pos}
        effective[(str(s), str(lab))] = {"raw": int(len(pos)), "effective": int(len(roots))}
    return effective


def analyse(index: DatasetIndex, config: AuditConfig) -> Duplicates:
    """The duplicate analysis of `index` under `config.leakage`."""
    cfg = config.leakage
    table = index.table.reset_index(drop=True)
    feats = index.features
    timings: dict[str, float] = {}
    n = len(table)
    splits = table["split"].astype(str).to_numpy() if n else np.zeros(0, str)
    labels = table["label"].astype(str).to_numpy() if n else np.zeros(0, str)
    order, split_rank = _split_ranks(index, splits)
    has = table["has_features"].to_numpy(bool) if n else np.zeros(0, bool)
    img_pos = np.nonzero(has)[0]

    t0 = time.perf_counter()
    rows = _exact_rows(table, feats, img_pos, split_rank) if cfg.exact and n else []
    timings["exact"] = time.perf_counter() - t0

    near_stats: dict[str, float] = {}
    approximations: dict[str, dict] = {}   # split (or "across splits") -> what its approximate k-NN kept
    if cfg.near and len(img_pos) >= 2 and "thumb" in feats and "phash" in feats:
        rows += _near_rows(index, config, table, img_pos, splits, order, split_rank, rows, near_stats,
                           approximations)
    timings.update({k: round(v, 4) for k, v in near_stats.items()})

    pairs = _pair_table(rows, splits, labels)
    components = _components(pairs, n)
    effective = _effective_counts(table, pairs, has)
    cols = {c: pairs[c].to_numpy() for c in PAIR_COLUMNS}
    summary = _summary(pairs, splits, cfg, timings, effective, len(components))
    if approximations:
        summary["approximate_knn"] = approximations
    return Duplicates(
        pairs=pairs, columns=cols, components=components,
        group_rows=_rows_per_group(cols["a"], cols["b"], components, n), effective=effective,
        names={c: table[c].astype(str).to_numpy() if n else np.zeros(0, str) for c in ("path", "split", "label")},
        splits=splits, labels=labels, timings=timings, summary=summary, approximate=approximations)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, x: int) -> int:
        p = self.parent
        root = x
        while p[root] != root:
            root = p[root]
        while p[x] != root:
            p[x], x = root, p[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self, members: Iterable[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for m in members:
            out[self.find(int(m))].append(int(m))
        return out


def _components(pairs: pd.DataFrame, n: int) -> list[list[int]]:
    """Groups of table rows joined by the given pairs (connected components of size >= 2), each
    sorted, ordered by their first row."""
    if not len(pairs):
        return []
    uf = _UnionFind(n)
    for a, b in zip(pairs["a"].to_numpy(), pairs["b"].to_numpy()):
        uf.union(int(a), int(b))
    members = np.unique(np.concatenate([pairs["a"].to_numpy(), pairs["b"].to_numpy()]))
    return sorted((sorted(g) for g in uf.groups(members).values() if len(g) > 1), key=lambda g: g[0])


def _exact_pairs(keys: pd.Series, positions: np.ndarray, split_rank: np.ndarray) -> list[tuple[int, int]]:
    """Star pairs inside each group of equal keys: every member with the group's representative
    (the first member of the earliest split, so train copies are the reference)."""
    pairs = []
    df = pd.DataFrame({"k": keys.to_numpy(), "pos": positions, "rank": split_rank})
    df = df[df["k"].astype(str) != ""]
    dup = df[df.duplicated("k", keep=False)].sort_values(["k", "rank", "pos"])
    for _, grp in dup.groupby("k", sort=False):
        pos = grp["pos"].to_numpy()
        rep = int(pos[0])
        pairs += [(rep, int(p)) for p in pos[1:]]
    return pairs


def _summary(pairs: pd.DataFrame, splits: np.ndarray, cfg: LeakageConfig, timings: dict[str, float],
             effective: dict, n_groups: int) -> dict[str, Any]:
    per_split: dict[str, int] = defaultdict(int)
    per_kind: dict[str, int] = defaultdict(int)
    for r in pairs.itertuples(index=False):
        sa, sb = sorted((str(splits[r.a]), str(splits[r.b])))
        per_split[f"{sa or '(pool)'}~{sb or '(pool)'}"] += 1
        per_kind[r.kind] += 1
    return {
        "pairs": int(len(pairs)),
        "cross_split_pairs": int(pairs["cross_split"].sum()) if len(pairs) else 0,
        "groups": n_groups,
        "pairs_per_split_pair": dict(per_split),
        "pairs_per_kind": dict(per_kind),
        "thresholds": {"near_threshold_bits": cfg.near_threshold, "verify_threshold": cfg.verify_threshold,
                       "search_threshold": cfg.search_threshold, "knn_shifts": cfg.knn_shifts,
                       "knn": cfg.knn, "knn_max_pairs": cfg.knn_max_pairs,
                       "cluster_warn_ratio": cfg.cluster_warn_ratio},
        "effective_counts": [{"split": s, "label": lab, **v} for (s, lab), v in effective.items()],
        "timings": {k: round(float(v), 4) for k, v in timings.items()},
    }


def _rows_per_group(a: np.ndarray, b: np.ndarray, groups: list[list[int]], n: int) -> list[np.ndarray]:
    """For each of `groups` (disjoint lists of table rows, as _components makes them), the positions
    of the pairs (a[i], b[i]) with both rows inside it, in their order. One pass over the pairs:
    filtering a DataFrame of all pairs once per group costs pandas overhead for every group,
    which adds up to seconds for a dataset with thousands of leaked groups (DSA202 in the check
    timings of a report)."""
    owner = np.full(n, -1, np.int64)
    for i, g in enumerate(groups):
        owner[g] = i
    oa, ob = owner[a], owner[b]
    pos = np.nonzero((oa >= 0) & (oa == ob))[0]
    key = oa[pos]
    order = np.argsort(key, kind="stable")
    pos, key = pos[order], key[order]
    bounds = np.searchsorted(key, np.arange(len(groups) + 1))
    return [pos[bounds[i]:bounds[i + 1]] for i in range(len(groups))]

