"""DSA301-DSA302: batch-size arithmetic and steps coverage, end to end on small real datasets."""

from __future__ import annotations


from dsaudit.checks.batching import arithmetic, divisors
from dsaudit.config import AuditConfig, BatchConfig
from dsaudit.findings import Severity
from dsaudit.pipeline import build, run_checks
from imagery import make_split_dataset


def audit(root, select, **batch):
    cfg = AuditConfig(select=tuple(select), jobs=1, batch=BatchConfig(**batch))
    index = build(root, cfg)
    findings, errors, ctx, _ = run_checks(index, cfg)
    assert not errors, errors
    return findings, ctx


def by_subject(findings, check_id):
    return {f.subject: f for f in findings if f.check_id == check_id}


def test_arithmetic_formulas():
    a = arithmetic(746, 16)
    assert (a["remainder"], a["steps"], a["steps_drop_remainder"], a["last_batch"]) == (10, 47, 46, 10)
    rec = a["recommendation"]
    assert divisors(746) == [1, 2, 373, 746]
    assert (rec["largest_exact"], rec["largest_exact_steps"]) == (2, 373)
    assert (rec["nearest_exact_below"], rec["nearest_exact_above"]) == (2, 373)
    b = arithmetic(48, 20, max_batch=32)
    assert b["recommendation"]["largest_exact"] == 24 and b["recommendation"]["largest_exact_steps"] == 2
    assert (b["recommendation"]["nearest_exact_below"], b["recommendation"]["nearest_exact_above"]) == (16, 24)
    c = arithmetic(33, 16)
    assert c["single_sample_last_batch"] and c["recommendation"]["nearest_without_single_last_batch"] == 15
    d = arithmetic(5, 8)
    assert d["smaller_than_one_batch"] and d["steps"] == 1 and d["steps_drop_remainder"] == 0
    assert d["last_batch"] == 5 and d["dropped_with_drop_remainder"] == 5


def test_remainder_and_single_sample_last_batch(tmp_path):
    make_split_dataset(tmp_path, {"train": {"cat": 17, "dog": 16}, "val": {"cat": 5, "dog": 5}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA301"], batch_size=16)
    found = by_subject(findings, "DSA301")
    train, val = found["split:train"], found["split:val"]
    assert train.severity == Severity.WARNING and "single sample" in train.title
    assert train.evidence["samples"] == 33 and train.evidence["remainder"] == 1
    assert train.evidence["steps"] == 3 and train.evidence["steps_drop_remainder"] == 2
    assert train.evidence["last_batch"] == 1
    assert train.evidence["recommendation"]["largest_exact"] == 11  # 33 = 3 * 11
    assert train.evidence["recommendation"]["largest_exact_steps"] == 3
    assert "BatchNormalization" in train.message
    assert val.severity == Severity.INFO and val.evidence["smaller_than_one_batch"]
    assert val.evidence["last_batch"] == 10 and val.evidence["recommendation"]["largest_exact"] == 10
    sets = ctx.sections["batching"]["sets"]
    assert [s["name"] for s in sets] == ["train", "val"] and ctx.sections["batching"]["batch_size"] == 16


def test_exact_division_is_quiet_and_val_batch_size_applies(tmp_path):
    make_split_dataset(tmp_path, {"train": {"cat": 16, "dog": 16}, "val": {"cat": 6, "dog": 6}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA301"], batch_size=16, val_batch_size=4)
    assert by_subject(findings, "DSA301") == {}
    rows = {r["name"]: r for r in ctx.sections["batching"]["sets"]}
    assert rows["train"]["remainder"] == 0 and rows["train"]["steps"] == 2
    assert rows["val"]["batch_size"] == 4 and rows["val"]["steps"] == 3 and rows["val"]["remainder"] == 0


def test_nothing_without_a_batch_size(tmp_path):
    make_split_dataset(tmp_path, {"train": {"cat": 3, "dog": 4}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA30*"])
    assert findings == [] and "batching" not in ctx.sections


def test_pool_with_validation_split_is_checked_on_its_simulated_sides(tmp_path):
    """fit(validation_split=0.2) never iterates the whole pool: its two sides are what is batched."""
    make_split_dataset(tmp_path, {"": {"a": 25, "b": 25}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA301"], batch_size=16, validation_split=0.2)
    rows = {r["name"]: r for r in ctx.sections["batching"]["sets"]}
    assert "pool" not in rows
    assert rows["pool (train side of validation_split)"]["samples"] == 40
    assert rows["pool (train side of validation_split)"]["remainder"] == 8
    assert rows["pool (validation tail)"]["samples"] == 10
    found = by_subject(findings, "DSA301")
    assert set(found) == {"split:pool:train-side", "split:pool:validation-tail"}


def test_steps_that_skip_or_repeat(tmp_path):
    make_split_dataset(tmp_path, {"train": {"cat": 16, "dog": 16}, "val": {"cat": 8, "dog": 8}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA302"], batch_size=16, val_batch_size=8,
                          steps_per_epoch=1, validation_steps=3)
    found = by_subject(findings, "DSA302")
    train = found["steps_per_epoch:split:train"].evidence
    assert train["verdict"] == "skips" and train["skipped"] == 16 and train["steps_for_one_pass"] == 2
    val = found["validation_steps:split:val"].evidence
    assert val["verdict"] == "repeats" and val["repeated"] == 8 and val["samples_per_epoch"] == 24
    assert "ran out of data" in found["validation_steps:split:val"].message


def test_steps_that_cover_exactly_are_quiet(tmp_path):
    make_split_dataset(tmp_path, {"train": {"cat": 17, "dog": 16}, "val": {"cat": 8, "dog": 8}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA302"], batch_size=16, steps_per_epoch=3, validation_steps=1)
    assert by_subject(findings, "DSA302") == {}
    verdicts = {r["option"]: r["verdict"] for r in ctx.sections["batching"]["steps"]}
    assert verdicts == {"steps_per_epoch": "exact", "validation_steps": "exact"}
