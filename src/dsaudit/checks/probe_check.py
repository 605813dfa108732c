"""DSA9xx: the probe CNN measures what the leaks found cost (TensorFlow, only when it runs).

The probe runs once per scan as an analysis (``probe.analysis.ProbeOutcome``, report.json
"sections.probe"), which the checks below declare and judge. In mode "auto" it runs when the
duplicate analysis found training/held-out pairs (or groups span the splits), the test can be
conclusive, and TensorFlow is importable.
"""

from __future__ import annotations

from typing import Any, Iterable

from dsaudit.checks.base import Check, CheckContext
from dsaudit.findings import Finding, Severity
from dsaudit.probe.analysis import WORDING, ProbeOutcome


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


MIN_N_FOR_NULL = 30     # fewer leaked images than this: a null result is "cannot tell"



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
    requires = (ProbeOutcome,)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        out = ctx.result(ProbeOutcome).outcome
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
    requires = (ProbeOutcome,)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        out = ctx.result(ProbeOutcome).outcome
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
    requires = (ProbeOutcome,)

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        out = ctx.result(ProbeOutcome).outcome
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
