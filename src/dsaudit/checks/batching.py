"""DSA30x: batch-size arithmetic per split, and whether steps per epoch cover a split exactly once.

Nothing here runs without a batch size (``--batch-size`` / ``batch.batch_size``). Which batch size
applies where: train (and a pool, and the training side of a simulated validation_split or
--keras-split) uses ``batch_size``; val, test, the validation tail and the Keras validation subset use
``val_batch_size`` (default: ``batch_size``, as Keras' ``validation_batch_size`` does).

For n samples and batch size b: remainder r = n mod b; steps = ceil(n / b) (a partial last batch of r
samples, or b when r = 0); steps with drop_remainder = floor(n / b), which never shows r samples per
epoch. The recommendation is the largest divisor of n that is at most ``max_batch_size`` (default: the
requested size) plus the nearest divisors of n below and above the requested size.
"""

from __future__ import annotations

import math
from typing import Any, Iterable


from dsaudit.checks.balance import (ordered_splits, samples, split_name, tail_source, tail_split)
from dsaudit.checks.base import Check, CheckContext
from dsaudit.findings import Finding, Severity


def divisors(n: int) -> list[int]:
    """All positive divisors of n, ascending."""
    small, large = [], []
    for d in range(1, int(math.isqrt(n)) + 1):
        if n % d == 0:
            small.append(d)
            if d != n // d:
                large.append(n // d)
    return small + large[::-1]


def arithmetic(n: int, batch: int, max_batch: int | None = None) -> dict[str, Any]:
    """Batch arithmetic of n samples in batches of `batch` (see the module docstring)."""
    max_batch = max_batch or batch
    rem = n % batch
    steps = -(-n // batch)
    last = rem if rem else (batch if n else 0)
    divs = divisors(n) if n > 0 else []
    fitting = [d for d in divs if d <= max_batch]
    best = max(fitting) if fitting else None
    below = max((d for d in divs if d <= batch), default=None)
    above = min((d for d in divs if d > batch), default=None)
    no_single = None
    if n > 2:  # nearest size to the requested one whose last batch is not a single sample
        for delta in range(0, n):
            for cand in (batch - delta, batch + delta):
                if 2 <= cand <= n and n % cand != 1:
                    no_single = cand
                    break
            if no_single is not None:
                break
    return {
        "samples": n,
        "batch_size": batch,
        "remainder": rem,
        "steps": steps,
        "steps_drop_remainder": n // batch,
        "last_batch": last,
        "dropped_with_drop_remainder": rem,
        "single_sample_last_batch": last == 1,
        "smaller_than_one_batch": n < batch,
        "recommendation": {
            "max_batch_size": max_batch,
            "largest_exact": best,
            "largest_exact_steps": n // best if best else None,
            "nearest_exact_below": below,
            "nearest_exact_below_steps": n // below if below else None,
            "nearest_exact_above": above,
            "nearest_exact_above_steps": n // above if above else None,
            "nearest_without_single_last_batch": no_single,
        },
    }


def batch_sets(ctx: CheckContext) -> list[dict[str, Any]]:
    """The sets a training run iterates: name, role ("train" | "eval"), samples and batch size."""
    cfg = ctx.config.batch
    b = cfg.batch_size
    if not b:
        return []
    vb = cfg.val_batch_size or b
    t = samples(ctx.index.table)
    splits = ordered_splits(ctx, t)
    out = []
    for split in splits:
        n = int((t["split"] == split).sum())
        if n == 0:
            continue
        role = "eval" if split in ("val", "test") else "train"
        out.append({"name": split_name(split), "split": split, "role": role, "n": n,
                    "batch": vb if role == "eval" else b, "simulated": False})
    source = tail_source(ctx, t)
    if cfg.validation_split and source is not None:
        head, tail, _ = tail_split(t[t["split"] == source], cfg.validation_split)
        if len(head) and len(tail):
            # fit(validation_split=...) never iterates the whole source: the checks apply to its two sides
            out = [s for s in out if s["split"] != source]
            out.append({"name": f"{split_name(source)} (train side of validation_split)", "split": source,
                        "role": "train", "n": len(head), "batch": b, "simulated": True})
            out.append({"name": f"{split_name(source)} (validation tail)", "split": source,
                        "role": "eval", "n": len(tail), "batch": vb, "simulated": True})
    loader = ctx.index.loader_split  # --keras-split: the loader's own (shuffled) subsets
    if loader is not None and loader.training and loader.validation:
        where = split_name(loader.source)
        out = [s for s in out if s["split"] != loader.source]  # as for validation_split: the two subsets
        out.append({"name": f"{where} (Keras training subset)", "split": loader.source, "role": "train",
                    "n": len(loader.training), "batch": b, "simulated": True, "tag": "keras-training"})
        out.append({"name": f"{where} (Keras validation subset)", "split": loader.source, "role": "eval",
                    "n": len(loader.validation), "batch": vb, "simulated": True, "tag": "keras-validation"})
    return out


def validation_set(config, sets: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The set that `validation_steps` counts, and why that one: the split named by --val-split,
    else val, else the validation tail of a simulated validation_split, else test (the split a
    poster passes as validation_data when there is no val folder). (None, why) when there is none."""
    wanted = config.batch.val_split
    real = {s["split"]: s for s in sets if not s["simulated"]}
    if wanted:
        if wanted in real:
            return real[wanted], f"{wanted}, named by --val-split"
        return None, f"--val-split {wanted} names a split this dataset does not have"
    if "val" in real:
        return real["val"], "val"
    tail = [s for s in sets if s["simulated"] and s["role"] == "eval"]
    if tail:
        return tail[0], f"{tail[0]['name']}, the validation_split simulation"
    if "test" in real:
        return real["test"], "test, as there is no val split (pass --val-split NAME to choose another)"
    return None, "there is no validation split (no val or test folder, and no --validation-split simulation)"


def _batching_section(ctx: CheckContext) -> dict[str, Any]:
    cfg = ctx.config.batch
    sec = ctx.sections.setdefault("batching", {})
    sec.update({"batch_size": cfg.batch_size, "val_batch_size": cfg.val_batch_size or cfg.batch_size,
                "max_batch_size": cfg.max_batch_size, "validation_split": cfg.validation_split})
    return sec


def _subject(s: dict[str, Any]) -> str:
    if not s["simulated"]:
        return f"split:{s['name']}"
    tag = s.get("tag") or ("train-side" if s["role"] == "train" else "validation-tail")
    return f"split:{split_name(s['split'])}:{tag}"


class BatchRemainder(Check):
    """A split whose size is not a multiple of the batch size, or whose last batch is one sample.

    Why: With floor division (`drop_remainder=True`, or steps = n // batch) the last n mod batch samples
    are never seen in an epoch; without it the last batch is smaller, and a last batch of ONE sample
    makes BatchNormalization in training mode fail ("Expected more than 1 value per channel") or
    normalise a single sample with a variance of zero.
    Fix: Pick a batch size from the recommendation in the evidence (it divides the split exactly), shuffle
    every epoch if you drop the remainder, or make sure the last batch has at least two samples.
    Thresholds: a remainder is info; a single-sample last batch on a training set is a warning.
    """

    id = "DSA301"
    name = "batch.remainder"
    severity = Severity.INFO

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        sets = batch_sets(ctx)
        if not sets:
            return
        cfg = ctx.config.batch
        rows = []
        for s in sets:
            maxb = cfg.max_batch_size or s["batch"]
            a = arithmetic(s["n"], s["batch"], maxb)
            row = {"name": s["name"], "split": split_name(s["split"]), "role": s["role"],
                   "simulated": s["simulated"], **a}
            rows.append(row)
            if a["remainder"] == 0:
                continue
            rec = a["recommendation"]
            n, b, r = s["n"], s["batch"], a["remainder"]
            single = a["single_sample_last_batch"]
            severity = Severity.WARNING if single and s["role"] == "train" else Severity.INFO
            parts = [f"{s['name']}: {n} samples in batches of {b} leave {r} over "
                     f"({n} mod {b} = {r}): {a['steps']} steps with a last batch of {a['last_batch']}, "
                     f"or {a['steps_drop_remainder']} steps with drop_remainder=True, which drops {r} "
                     f"samples every epoch."]
            if a["smaller_than_one_batch"]:
                parts.append("The whole set is smaller than one batch.")
            if single:
                parts.append("The last batch holds a single sample"
                             + (": BatchNormalization in training mode fails or misbehaves on it."
                                if s["role"] == "train" else " (harmless for evaluation, but noisy per-batch "
                                "metrics)."))
            if rec["largest_exact"] and rec["largest_exact"] > 1:
                parts.append(f"Largest batch size <= {rec['max_batch_size']} that divides {n}: "
                             f"{rec['largest_exact']} ({rec['largest_exact_steps']} steps).")
            else:
                parts.append(f"No batch size between 2 and {rec['max_batch_size']} divides {n}.")
            near = [f"{rec[k]} ({rec[k + '_steps']} steps)" for k in ("nearest_exact_below",
                                                                   "nearest_exact_above")
                    if rec[k] and 1 < rec[k] < n]
            if near:
                parts.append("Nearest exact sizes around " f"{b}: " + " and ".join(near) + ".")
            if single and rec["nearest_without_single_last_batch"]:
                parts.append(f"Batch size {rec['nearest_without_single_last_batch']} avoids a "
                             "single-sample last batch.")
            title = (f"Last batch of {s['name']} is a single sample (batch {b})" if single else
                     f"{s['name']}: {n} samples not divisible by batch {b} (remainder {r})")
            yield self.finding(title, " ".join(parts), subject=_subject(s), severity=severity,
                               evidence=row)
        _batching_section(ctx)["sets"] = rows


class StepsCoverage(Check):
    """steps_per_epoch or validation_steps that do not cover a split exactly once.

    Why: With validation_steps * batch below the validation size each evaluation sees only part of it
    (a different part each epoch when the pipeline repeats), so val_accuracy jumps between epochs for no
    reason; above it the pipeline must repeat (or Keras stops with "ran out of data") and some samples
    count twice. The same holds for steps_per_epoch and training.
    Fix: Leave steps_per_epoch and validation_steps unset (Keras then runs one full pass), or set them to
    ceil(n / batch) as given in the evidence.
    Thresholds: none; runs when batch.steps_per_epoch or batch.validation_steps is set (--steps-per-epoch,
    --validation-steps) together with a batch size. Exact means steps = ceil(n / batch). validation_steps
    counts the split named by --val-split (batch.val_split), else val, else the tail of a simulated
    validation_split, else test; the terminal says which. On a pool with --validation-split the
    steps and batch sizes are checked on the simulated train side and tail, not on the whole pool.
    """

    id = "DSA302"
    name = "batch.steps-coverage"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        cfg = ctx.config.batch
        sets = batch_sets(ctx)
        if not sets or not (cfg.steps_per_epoch or cfg.validation_steps):
            return
        # training: a simulated train side replaces its pool; validation: see validation_set
        train = [s for s in sets if s["role"] == "train" and s["simulated"]] or \
                [s for s in sets if s["role"] == "train"]
        chosen, _ = validation_set(ctx.config, sets)
        rows = []
        for option, steps, group in (("steps_per_epoch", cfg.steps_per_epoch, train[:1]),
                                     ("validation_steps", cfg.validation_steps, [chosen] if chosen else [])):
            if not steps:
                continue
            for s in group:
                n, b = s["n"], s["batch"]
                full = -(-n // b)
                capacity = steps * b
                if steps == full:
                    verdict, skipped, repeated = "exact", 0, 0
                elif capacity < n:
                    verdict, skipped, repeated = "skips", n - capacity, 0
                else:
                    verdict, skipped, repeated = "repeats", 0, capacity - n
                row = {"option": option, "steps": steps, "name": s["name"], "split": split_name(s["split"]),
                       "samples": n, "batch_size": b, "steps_for_one_pass": full,
                       "samples_per_epoch": capacity, "verdict": verdict, "skipped": skipped,
                       "repeated": repeated, "simulated": s["simulated"]}
                rows.append(row)
                if verdict == "exact":
                    continue
                if verdict == "skips":
                    what = (f"covers {capacity} of {n} samples: {skipped} ({skipped / n:.0%}) are not seen "
                            f"in an epoch (a different subset each epoch if the pipeline repeats and "
                            f"shuffles, the same tail never if it does not)")
                else:
                    what = (f"asks for {capacity} samples from {n}: without .repeat() Keras stops with \"Your "
                            f"input ran out of data\"; with it about {repeated} samples are seen twice per epoch")
                yield self.finding(
                    f"{option}={steps} does not cover {s['name']} exactly once",
                    f"{option}={steps} with batch size {b} on {s['name']} {what}. One exact pass is "
                    f"{full} steps (ceil({n}/{b})).",
                    subject=f"{option}:{_subject(s)}", evidence=row)
        _batching_section(ctx)["steps"] = rows


CHECKS = [BatchRemainder, StepsCoverage]
