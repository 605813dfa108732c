"""Options that have nothing to act on, each said in one line: never silence.

A poster passed `--validation-steps 10` for a dataset whose held-out folder was `test`, and the
option was silently ignored; on a pool `--validation-steps` and `--group-regex` were ignored the
same way, and `--probe` "did not run" with an unrelated hint. A user who gives an option expects
it to be checked; when it cannot be, or is applied somewhere they may not expect (test in place of
val), they are told here. The notes go to the terminal as the scan runs and into report.json
(`meta.notes`) and the HTML report.
"""

from __future__ import annotations

from dsaudit.checks.base import CheckContext


def _real_splits(ctx: CheckContext) -> list[str]:
    return sorted({s for s in ctx.index.table["split"].unique() if s})


def option_notes(ctx: CheckContext) -> list[str]:
    """One line for each option given that does not apply, or applies somewhere worth naming."""
    from dsaudit.checks.batching import batch_sets, validation_set

    cfg = ctx.config
    notes: list[str] = []
    splits = _real_splits(ctx)
    simulated = bool(cfg.batch.validation_split) and not splits
    sets = batch_sets(ctx)
    if cfg.batch.validation_steps and cfg.batch.batch_size:
        chosen, why = validation_set(cfg, sets)
        if chosen is None:
            notes.append(f"--validation-steps {cfg.batch.validation_steps} is not checked: {why}")
        elif chosen["split"] != "val" or chosen["simulated"]:
            notes.append(f"--validation-steps {cfg.batch.validation_steps} is checked on {why}")
    if cfg.batch.val_split and not cfg.batch.validation_steps:
        notes.append(f"--val-split {cfg.batch.val_split} changes nothing without --validation-steps "
                     "(it only says which split those steps count)")
    if cfg.batch.val_batch_size and sets and not any(s["role"] == "eval" for s in sets):
        notes.append(f"--val-batch-size {cfg.batch.val_batch_size} is not checked: there is no val or test "
                     "split and no --validation-split tail to batch")
    if cfg.leakage.group_regex:
        notes += _group_notes(ctx, splits)
    if cfg.probe.mode == "on" and len(splits) < 2 and not simulated:
        where = "one pool" if not splits else f"only the {splits[0]} split"
        notes.append(f"--probe has nothing to measure: it compares training and held-out images, and this dataset "
                     f"is {where}" + ("; add --validation-split F to simulate a held-out split" if not splits
                                      else ""))
    if cfg.splits and ctx.index.layout.kind == "manifest":
        notes.append("--split is not used with --manifest: the manifest's split column gives the splits")
    return notes


def _group_notes(ctx: CheckContext, splits: list[str]) -> list[str]:
    from dsaudit.index.groups import apply_group_regex

    pattern = ctx.config.leakage.group_regex
    table = ctx.index.table
    matched = int((apply_group_regex(table["path"], pattern) != "").sum())
    if matched == 0:
        return [f"--group-regex {pattern!r} matches none of the {len(table)} paths, so no file has a group and "
                "the group-leakage check (DSA205) has nothing to compare; the regex is searched in the path "
                "relative to ROOT, e.g. " + repr(str(table["path"].iloc[0]))]
    if len(splits) < 2:
        where = "one pool" if not splits else f"only the {splits[0]} split"
        return [f"--group-regex {pattern!r} gives {matched} file(s) a group, but this dataset is {where}: "
                "group leakage (DSA205) needs a group on both sides of two splits"]
    return []
