"""DSA9xx: the probe CNN measures what the leaks found cost (TensorFlow, only when it runs).

The probe runs once per scan, shared by the checks below through ``ctx.artifacts["probe.result"]``,
and publishes its full result in ``ctx.sections["probe"]`` (report.json "sections.probe").
In mode "auto" it runs when the leakage checks found training/held-out pairs (or groups span the
splits) and TensorFlow is importable (checked with importlib, never by importing it).
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Iterable


from dsaudit.checks.balance import state
from dsaudit.checks.base import Check, CheckContext
from dsaudit.findings import Finding, Severity
from dsaudit.probe import design as D
from dsaudit.probe import tensorflow_available

RESULT_KEY = "probe.result"


def _settings(ctx: CheckContext, budget: float):
    from dsaudit.probe.runner import ProbeSettings

    cfg = ctx.config.probe
    return ProbeSettings(budget_seconds=budget, seed=int(ctx.config.seed),
                         jobs=ctx.config.resolved_jobs(),
                         max_train=int(cfg.max_train),
                         max_epochs=int(cfg.max_epochs))


def probe_result(ctx: CheckContext) -> dict[str, Any]:
    """Run the probe (at most once per scan) and return its section."""
    if RESULT_KEY in ctx.artifacts:
        return ctx.artifacts[RESULT_KEY]
    cfg = ctx.config.probe
    table, simulated = probe_table(ctx)
    pairs = ctx.artifacts.get("leakage.pairs")
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
        ctx.artifacts[RESULT_KEY] = out
        ctx.sections["probe"] = out
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
                state(ctx, "probe", f"{WORDING[name][2].lower()} not measured: {why}")
                results[name] = {"status": "skipped", "reason": why, "source": name,
                                 "power": D.detection_power(len(sets.leaked), cfg.min_inflation, cfg.p_value)}
                jobs.remove((name, sets))
        if not jobs:
            out.update({"reason": "; ".join(r["reason"] for r in results.values()),
                        "leakage": results.get("pairs"), "group_leakage": results.get("groups")})
            out = D.jsonable(out)
            ctx.artifacts[RESULT_KEY] = out
            ctx.sections["probe"] = out
            return out

    from dsaudit.probe.runner import run_probe

    out["status"] = "ran"
    out["budget_seconds"] = budget
    if ctx.notify:
        ctx.notify(f"training the probe CNN to measure what the leakage costs (up to {budget:.0f} s; "
                   "--no-probe skips it)")
    started = time.monotonic()
    for i, (name, sets) in enumerate(jobs):
        # the remaining budget, shared by the probes still to run
        share = max(0.0, budget - (time.monotonic() - started)) / (len(jobs) - i)
        try:
            results[name] = run_probe(table, sets, _settings(ctx, share))
        except Exception as exc:  # a failed probe is a result, never a crashed scan
            results[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc(limit=5)}
    out.update({"leakage": results.get("pairs"), "group_leakage": results.get("groups")})
    out["elapsed_seconds"] = round(time.monotonic() - started, 3)
    out = D.jsonable(out)
    ctx.artifacts[RESULT_KEY] = out
    ctx.sections["probe"] = out
    return out


def probe_table(ctx: CheckContext):
    """The index table as the probe sees it, and how its held-out split was made ("" for real
    splits): on a pool with --validation-split, the tail Keras' fit(validation_split=F) would hold
    out is the val split and the rest train, as the batch and ordering checks simulate it."""
    from dsaudit.checks.balance import samples, tail_split

    table = ctx.index.table
    fraction = ctx.config.batch.validation_split
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


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


MIN_N_FOR_NULL = 30     # fewer leaked images than this: a null result is "cannot tell"

WORDING = {  # source -> (what leaks, which held-out images, title subject)
    "pairs": ("duplicates across splits", "that have a copy or near-copy in training", "Leakage"),
    "groups": ("groups shared across splits", "whose group also has images in training",
               "Group leakage"),
}


def _inflation_finding(check: Check, ctx: CheckContext, res: dict[str, Any],
                       source: str) -> Iterable[Finding]:
    cfg = ctx.config.probe
    what, which, subject_word = WORDING[source]
    if res and res.get("status") == "skipped":
        reason = str(res.get("reason") or "")
        hint = " Raise --probe-budget to measure it." if "budget" in reason and "--probe" not in reason else ""
        yield check.finding(f"The probe could not measure what the {what} cost",
                            f"The probe did not train: {reason}.{hint}", severity=Severity.INFO,
                            subject=f"probe:{res.get('source')}",
                            evidence={"reason": res.get("reason"), "source": res.get("source")})
        return
    if not res or res.get("status") != "ran" or not res.get("inflation") or \
            res["inflation"].get("inflation") is None:
        if res and res.get("status") == "failed":
            raise RuntimeError(f"probe failed: {res.get('error')}")
        return
    inf = res["inflation"]
    lo, hi = inf["interval"]
    p = inf["p_value"]
    value = inf["inflation"]
    equal = res.get("equal_training", True)
    significant = equal and p is not None and p < cfg.p_value and value > 0
    large = significant and value >= cfg.min_inflation
    ctxt = res.get("context", {})
    naive = (ctxt.get("naive_gap") or {}).get("gap")
    adjusted = (ctxt.get("adjusted_gap") or {}).get("gap")
    runs = {r["name"]: r for r in res.get("runs", [])}
    a, b = runs.get("A", {}), runs.get("B", {})
    n = inf["n"]
    head = (f"On {n} held-out images {which}, the probe trained WITH those training "
            f"partners scored {_pct(inf['accuracy_with_partners'])} and the same probe trained "
            f"without them {_pct(inf['accuracy_without_partners'])}: inflation "
            f"{_fmt(value)} points (95% interval {_fmt(lo)} to {_fmt(hi)}, McNemar p = {p:.2g}; "
            f"{res['design']['train_size_a']} training images, {a.get('epochs_done')} epochs, "
            f"{res.get('input_size')} px, seed {res.get('seed')}).")
    if large:
        verdict = ("The leak makes the validation score look better than the model is: "
                   "scores on these images measure memorisation, not generalisation.")
        sev, title = Severity.ERROR, (f"{subject_word} inflates the probe's validation accuracy "
                                      f"by {_fmt(value)} points")
    elif significant:
        verdict = (f"The inflation is significant but below the {100 * cfg.min_inflation:.0f}-point "
                   "threshold: a small cost.")
        sev, title = Severity.INFO, (f"{subject_word} inflates validation accuracy slightly "
                                     f"({_fmt(value)} points)")
    elif not equal:
        verdict = ("Inconclusive: the budget stopped the two runs at different points, so they "
                   "cannot be compared. Raise --probe-budget.")
        sev, title = Severity.INFO, f"Inflation from {what} could not be measured within the budget"
    else:
        width = hi - lo
        if n < MIN_N_FOR_NULL:
            why = f"cannot tell at this size (only {n} leaked images)."
        elif width > 0.2:
            why = "cannot tell at this size (the interval is wide)."
        else:
            why = "the leak costs little here."
        verdict = "No significant inflation: " + why
        sev, title = Severity.INFO, f"No significant inflation from {what} ({_fmt(value)} points)"
    context = (f" Context only (confounded, not the verdict): naive leaked-vs-clean gap "
               f"{_fmt(naive)} points, class-mix-adjusted {_fmt(adjusted)} points.")
    cuts = res.get("cuts") or []
    cut_text = (" Budget cuts: " + "; ".join(cuts) + ".") if cuts else ""
    yield check.finding(title, head + " " + verdict + context + cut_text, severity=sev,
                        subject=f"probe:{res.get('source')}",
                        evidence={"inflation": value, "interval": [lo, hi], "p_value": p,
                                  "n_leaked": n, "naive_gap": naive, "adjusted_gap": adjusted,
                                  "train_size": res["design"]["train_size_a"],
                                  "epochs": a.get("epochs_done"), "input_size": res.get("input_size"),
                                  "seed": res.get("seed"), "cuts": cuts,
                                  "per_class": res.get("per_class", []),
                                  "accuracy_with_partners": inf["accuracy_with_partners"],
                                  "accuracy_without_partners": inf["accuracy_without_partners"],
                                  "clean_accuracy_b": b.get("clean_accuracy")})


class ProbeLeakInflation(Check):
    """Leakage inflates the validation score of a probe CNN (measured counterfactually).

    Why: Listing duplicate pairs says nothing about what they cost. The probe trains a small CNN
    twice with the same seed and subsample size: once with the training partners of the leaked
    validation images, once with each partner replaced by another image of its class. The
    difference in accuracy on the leaked images is what the leak adds to the score. Comparing
    leaked with clean images instead is confounded (duplicated images tend to be easy ones) and
    is reported only as context.

    Fix: Remove the training copies of validation images (or move whole duplicate clusters to one
    split) and re-evaluate; an inflated validation score overstates the model.

    Thresholds: error when the inflation is significant (McNemar p < probe.p_value) and at least
    probe.min_inflation; info otherwise. Time bounded by probe.budget_seconds.
    """

    id = "DSA901"
    name = "probe.leak-inflation"
    severity = Severity.ERROR

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        out = probe_result(ctx)
        cfg = ctx.config.probe
        if out.get("status") != "ran":
            if cfg.mode == "on" and out.get("status") == "skipped":
                yield self.finding("The probe was requested but did not run",
                                   f"The probe did not run: {out.get('reason')}.",
                                   severity=Severity.WARNING, subject="probe:not-run",
                                   evidence={"reason": out.get("reason")})
            return
        yield from _inflation_finding(self, ctx, out.get("leakage") or {}, "pairs")


class ProbeGroupLeakage(Check):
    """Group leakage (one group on both sides of the split) inflates the probe's validation score.

    Why: Images of one patient, source or figure are near-duplicates in disguise; with the group
    on both sides of the split the model is rewarded for recognising the group. The probe measures
    it like DSA901: same seed and size, with and without the training images of the leaked groups.

    Fix: Split by group (GroupKFold / GroupShuffleSplit on the group column or --group-regex).

    Thresholds: as DSA901 (probe.p_value, probe.min_inflation).
    """

    id = "DSA904"
    name = "probe.group-leakage"
    severity = Severity.ERROR

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        out = probe_result(ctx)
        if out.get("status") != "ran":
            return
        yield from _inflation_finding(self, ctx, out.get("group_leakage") or {}, "groups")


class ProbeNotLearnable(Check):
    """The probe stays near chance on clean held-out images: labels may not be learnable at this size.

    Why: A probe that learns nothing cannot memorise either, so "no inflation" from such a probe
    is not a clean bill of health. It may also mean the labels are noisy or unrelated to the
    pixels, or that the classes need more data or a bigger model than a quick probe.

    Fix: Treat the probe's null results as inconclusive; check labels by eye on a sample, and
    judge leakage by the duplicate findings (DSA2xx) alone.

    Thresholds: warning when the probe's clean accuracy is not above the majority-class rate
    (one-sided binomial p >= probe.p_value).
    """

    id = "DSA902"
    name = "probe.not-learnable"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        out = probe_result(ctx)
        if out.get("status") != "ran":
            return
        for key in ("leakage", "group_leakage"):
            res = out.get(key) or {}
            learn = res.get("learnability") or {}
            if res.get("status") != "ran" or not learn.get("clean_n"):
                continue
            p = learn.get("p_value_above_chance")
            if p is None or p < ctx.config.probe.p_value:
                continue
            lo, hi = learn["interval"]
            yield self.finding(
                "The probe stays near chance on clean held-out images",
                f"Trained without any leaked partners, the probe scored {_pct(learn['clean_accuracy'])} "
                f"(95% interval {_pct(lo)} to {_pct(hi)}) on {learn['clean_n']} clean held-out "
                f"images, against {_pct(learn['chance'])} for always predicting the largest class "
                f"(p = {p:.2g}). The labels may not be learnable at this size, so a small measured "
                "inflation is not evidence that the leak is harmless.",
                subject=f"probe:{res.get('source')}",
                evidence={**learn, "source": res.get("source")})
            break


CHECKS = [ProbeLeakInflation, ProbeNotLearnable, ProbeGroupLeakage]
