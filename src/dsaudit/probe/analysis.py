"""The probe as an analysis: run (at most once per scan) when the DSA9xx checks are selected.

It reads the duplicate analysis (the training/held-out pairs it measures) and the index's groups;
in mode "auto" it runs when either leaks, its test can be conclusive (``underpowered``) and
TensorFlow is importable (checked with importlib, never by importing it). Its outcome is report.json
"sections.probe"; what it decided not to measure goes to the report's statements.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from dsaudit.analysis import Analysis
from dsaudit.config import AuditConfig
from dsaudit.index.dataset import DatasetIndex
from dsaudit.probe import design as D
from dsaudit.probe import tensorflow_available
from dsaudit.similarity.duplicates import Duplicates

WORDING = {  # source -> (what leaks, which held-out images, title subject)
    "pairs": ("duplicates across splits", "that have a copy or near-copy in training", "Leakage"),
    "groups": ("groups shared across splits", "whose group also has images in training",
               "Group leakage"),
}


@dataclass(frozen=True, eq=False)
class ProbeOutcome(Analysis):
    """What the probe did: "status" (off, skipped, ran) with a reason, or the runs' results;
    `statements` are the report's one-line notes (sections.statements) on what it skipped."""

    name = "probe"
    section = "probe"
    requires = (Duplicates,)

    outcome: dict[str, Any]
    statements: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def compute(cls, index: DatasetIndex, config: AuditConfig, results: Mapping[type, Analysis],
                notify: Callable[[str], None] | None = None) -> "ProbeOutcome":
        duplicates = results.get(Duplicates)
        statements: list[dict[str, str]] = []
        outcome = run(index, config, getattr(duplicates, "pairs", None), notify, statements)
        return cls(outcome, statements)

    def report_section(self) -> dict[str, Any]:
        return self.outcome

    def report_statements(self) -> list[dict[str, str]]:
        return list(self.statements)


def _settings(config: AuditConfig, budget: float):
    from dsaudit.probe.runner import ProbeSettings

    cfg = config.probe
    return ProbeSettings(budget_seconds=budget, seed=int(config.seed),
                         jobs=config.resolved_jobs(),
                         max_train=int(cfg.max_train),
                         max_epochs=int(cfg.max_epochs))


def run(index: DatasetIndex, config: AuditConfig, pairs: Any, notify: Callable[[str], None] | None = None,
        statements: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Run the probe on the leaks in `pairs` (Duplicates.pairs) and the index's groups."""
    statements = statements if statements is not None else []
    cfg = config.probe
    table, simulated = probe_table(index, config)
    out: dict[str, Any] = {"mode": cfg.mode, "status": "skipped"}
    if simulated:
        out["held_out"] = simulated
    n_cross = D.cross_split_pair_count(table, pairs)
    pair_sets = D.leak_sets_from_pairs(table, pairs)
    has_groups = "group" in table and bool((table["group"].fillna("").astype(str) != "").any())
    group_sets = D.leak_sets_from_groups(table) if has_groups else None
    n_group_leaked = 0 if group_sets is None else len(group_sets.leaked)
    out["cross_split_pairs"] = n_cross
    out["leaked_by_pairs"] = int(len(pair_sets.leaked))
    out["leaked_by_groups"] = int(n_group_leaked)
    has_train = bool(len(pair_sets.train))
    has_held = bool(len(pair_sets.leaked) + len(pair_sets.clean))

    reason = ""
    if cfg.mode == "off":
        out["status"] = "off"
        reason = "probe disabled (--no-probe / probe.mode = off)"
    elif cfg.budget_seconds <= 0:
        reason = "probe budget is zero"
    elif not has_train or not has_held:
        reason = "the probe needs a train split and a val or test split" + (
            "; this is one pool: add --validation-split F to hold out its tail as Keras would"
            if set(table["split"].astype(str)) <= {""} else "")
    elif cfg.mode == "auto" and not (len(pair_sets.leaked) or n_group_leaked):
        reason = "no leakage between training and held-out images was found"
    elif not tensorflow_available():
        reason = "TensorFlow is not installed (pip install 'dsaudit[probe]')"
    if reason:
        out["reason"] = reason
        return out

    budget = float(cfg.budget_seconds)
    jobs = []
    if len(pair_sets.leaked) or not n_group_leaked:
        jobs.append(("pairs", pair_sets))
    if n_group_leaked:
        jobs.append(("groups", group_sets))
    results: dict[str, Any] = {}
    if cfg.mode == "auto":  # decide before training: skip a test that cannot be conclusive
        for name, sets in list(jobs):
            why = underpowered(len(sets.leaked), cfg.min_inflation, cfg.p_value, cfg.min_power)
            if why:
                statements.append({"topic": "probe", "text": f"{WORDING[name][2].lower()} not measured: {why}"})
                results[name] = {"status": "skipped", "reason": why, "source": name,
                                 "power": D.detection_power(len(sets.leaked), cfg.min_inflation, cfg.p_value)}
                jobs.remove((name, sets))
        if not jobs:
            out.update({"reason": "; ".join(r["reason"] for r in results.values()),
                        "leakage": results.get("pairs"), "group_leakage": results.get("groups")})
            return D.jsonable(out)

    from dsaudit.probe.runner import run_probe

    out["status"] = "ran"
    out["budget_seconds"] = budget
    if notify:
        notify(f"training the probe CNN to measure what the leakage costs (up to {budget:.0f} s; "
               "--no-probe skips it)")
    started = time.monotonic()
    for i, (name, sets) in enumerate(jobs):
        # the remaining budget, shared by the probes still to run
        share = max(0.0, budget - (time.monotonic() - started)) / (len(jobs) - i)
        try:
            results[name] = run_probe(table, sets, _settings(config, share))
        except Exception as exc:  # a failed probe is a result, never a crashed scan
            results[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc(limit=5)}
    out.update({"leakage": results.get("pairs"), "group_leakage": results.get("groups")})
    out["elapsed_seconds"] = round(time.monotonic() - started, 3)
    return D.jsonable(out)


def probe_table(index: DatasetIndex, config: AuditConfig):
    """The index table as the probe sees it, and how its held-out split was made ("" for real
    splits): on a pool with --validation-split, the tail Keras' fit(validation_split=F) would hold
    out is the val split and the rest train, as the batch and ordering checks simulate it."""
    from dsaudit.checks.balance import samples, tail_split

    table = index.table
    fraction = config.batch.validation_split
    if not fraction or not set(table["split"].astype(str)) <= {""}:
        return table, ""
    head, tail, _ = tail_split(samples(table), fraction)
    if not len(head) or not len(tail):
        return table, ""
    simulated = table.copy()
    simulated["split"] = "train"
    simulated.loc[tail.index, "split"] = "val"
    return simulated, f"the last {fraction:g} of the pool in loader order (--validation-split {fraction:g})"


def underpowered(n: int, effect: float, alpha: float, min_power: float) -> str:
    """Why a probe on `n` leaked evaluation images is not worth training, or "" when it is: even in
    the most favourable case its test has less than `min_power` chance of finding an inflation of
    `effect` (design.detection_power), so it would end in "cannot tell"."""
    power = D.detection_power(n, effect, alpha)
    if power >= min_power:
        return ""
    need = D.images_for_power(effect, alpha, 0.8)
    least = D.smallest_significant_count(alpha)
    return (f"{n} leaked evaluation image(s) give the probe's McNemar test at most a {power:.0%} chance of "
            f"detecting a {100 * effect:.0f}-point inflation (it needs at least {least} images on which the "
            f"two runs disagree, all one way); about {need} leaked images would give 80%, so it was not "
            "trained; run it anyway with --probe")
