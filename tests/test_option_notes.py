"""Options with nothing to act on say so in one line; --validation-steps counts val, else the
validation_split tail, else test, or the split named by --val-split; all on real image files."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dsaudit.cli import app
from dsaudit.config import AuditConfig, BatchConfig, ConfigError, LeakageConfig, ProbeConfig, load_config
from dsaudit.pipeline import scan
from imagery import make_split_dataset


def _scan(root, **batch):
    leakage = batch.pop("leakage", LeakageConfig())
    probe = batch.pop("probe", ProbeConfig(mode="off"))
    cfg = AuditConfig(cache=False, jobs=1, batch=BatchConfig(**batch), leakage=leakage, probe=probe)
    told: list[str] = []
    result = scan(root, cfg, notify=told.append)
    assert told == result.meta["notes"]  # each note is said as the scan runs and kept in the report
    return result


def _steps(result):
    return {(r["option"], r["name"]): r for r in result.sections.get("batching", {}).get("steps", [])}


def test_validation_steps_on_train_and_test_count_test_and_say_so(tmp_path):
    """The poster passed the test folder as validation_data; --validation-steps 10 was ignored."""
    make_split_dataset(tmp_path, {"train": {"a": 8, "b": 8}, "test": {"a": 5, "b": 5}}, size=16)
    result = _scan(tmp_path, batch_size=4, validation_steps=10)
    assert _steps(result)[("validation_steps", "test")]["verdict"] == "repeats"
    assert [f.subject for f in result.findings if f.check_id == "DSA302"] == ["validation_steps:split:test"]
    assert result.meta["notes"] == ["--validation-steps 10 is checked on test, as there is no val split "
                                    "(pass --val-split NAME to choose another)"]


def test_val_split_names_the_split_the_steps_count(tmp_path):
    make_split_dataset(tmp_path, {"train": {"a": 8, "b": 8}, "val": {"a": 2, "b": 2},
                                  "test": {"a": 5, "b": 5}}, size=16)
    by_default = _scan(tmp_path, batch_size=4, validation_steps=3)
    assert list(_steps(by_default)) == [("validation_steps", "val")] and by_default.meta["notes"] == []
    named = _scan(tmp_path, batch_size=4, validation_steps=3, val_split="test")
    assert list(_steps(named)) == [("validation_steps", "test")]
    assert named.meta["notes"] == ["--validation-steps 3 is checked on test, named by --val-split"]


def test_validation_steps_without_any_validation_split_say_why(tmp_path):
    make_split_dataset(tmp_path, {"": {"a": 6, "b": 6}}, size=16)
    result = _scan(tmp_path, batch_size=4, validation_steps=2, val_batch_size=8)
    assert _steps(result) == {}
    assert result.meta["notes"] == [
        "--validation-steps 2 is not checked: there is no validation split (no val or test folder, and no "
        "--validation-split simulation)",
        "--val-batch-size 8 is not checked: there is no val or test split and no --validation-split tail to batch"]


def test_on_a_pool_with_validation_split_the_steps_count_the_simulated_tail(tmp_path):
    make_split_dataset(tmp_path, {"": {"a": 10, "b": 10}}, size=16)
    result = _scan(tmp_path, batch_size=4, validation_steps=1, steps_per_epoch=4, validation_split=0.2)
    steps = _steps(result)
    assert steps[("validation_steps", "pool (validation tail)")]["samples"] == 4
    assert steps[("steps_per_epoch", "pool (train side of validation_split)")]["verdict"] == "exact"
    assert result.meta["notes"] == ["--validation-steps 1 is checked on pool (validation tail), the "
                                    "validation_split simulation"]


def test_group_regex_that_matches_nothing_and_one_on_a_pool(tmp_path):
    make_split_dataset(tmp_path / "splits", {"train": {"a": 3}, "val": {"a": 2}}, size=16)
    missed = _scan(tmp_path / "splits", leakage=LeakageConfig(group_regex=r"patient(\d+)"))
    assert len(missed.meta["notes"]) == 1
    assert missed.meta["notes"][0].startswith("--group-regex 'patient(\\\\d+)' matches none of the 5 paths")
    make_split_dataset(tmp_path / "pool", {"": {"a": 3, "b": 3}}, size=16)
    pooled = _scan(tmp_path / "pool", leakage=LeakageConfig(group_regex=r"img_(\d)"))
    assert pooled.meta["notes"] == ["--group-regex 'img_(\\\\d)' gives 6 file(s) a group, but this dataset is one "
                                    "pool: group leakage (DSA205) needs a group on both sides of two splits"]
    fine = _scan(tmp_path / "splits", leakage=LeakageConfig(group_regex=r"img_(\d)"))
    assert fine.meta["notes"] == []


def test_probe_on_a_pool_without_a_held_out_split_says_why(tmp_path):
    make_split_dataset(tmp_path, {"": {"a": 3, "b": 3}}, size=16)
    result = _scan(tmp_path, probe=ProbeConfig(mode="on", budget_seconds=0))
    assert result.meta["notes"] == ["--probe has nothing to measure: it compares training and held-out images, "
                                    "and this dataset is one pool; add --validation-split F to simulate a "
                                    "held-out split"]


def test_val_split_must_be_a_split_name():
    with pytest.raises(ConfigError, match="not a split name"):
        load_config(None, None, {"batch.batch_size": 4, "batch.val_split": "holdback"})
    cfg, _ = load_config(None, None, {"batch.batch_size": 4, "batch.val_split": "Testing"})
    assert cfg.batch.val_split == "test"


def test_the_note_reaches_the_terminal_and_the_report(tmp_path):
    make_split_dataset(tmp_path / "data", {"train": {"a": 8, "b": 8}, "test": {"a": 5, "b": 5}}, size=16)
    out = tmp_path / "out"
    run = CliRunner().invoke(app, ["scan", str(tmp_path / "data"), "-o", str(out), "--no-cache",
                                   "--batch-size", "4", "--validation-steps", "10"])
    assert run.exit_code in (0, 1), run.output
    assert "dsaudit: --validation-steps 10 is checked on test" in run.output
    assert "--validation-steps 10 is checked on test" in (out / "report.html").read_text()
