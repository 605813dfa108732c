"""The probe decides before it trains: auto mode skips a test that cannot be conclusive (a power
calculation from the counts) and says what would make it possible; --probe on a pool with
--validation-split measures on the simulated tail. No TensorFlow training here: fast."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from dsaudit.probe import analysis as probe_analysis
from dsaudit.config import AuditConfig, BatchConfig, ProbeConfig
from dsaudit.pipeline import build, run_checks, scan
from dsaudit.probe import design as D
from imagery import make_split_dataset


def test_power_is_an_upper_bound_from_the_exact_mcnemar_test():
    need = D.smallest_significant_count(0.05)
    assert need == 6
    assert binomtest(need, need, 0.5).pvalue < 0.05 <= binomtest(need - 1, need - 1, 0.5).pvalue
    assert D.detection_power(1, 0.05, 0.05) == 0.0  # one leaked pair can never be conclusive
    assert D.detection_power(71, 0.05, 0.05) == pytest.approx(0.144, abs=0.001)
    # by simulation: the chance that at least 6 of n images disagree (all favouring the leaky run)
    rng = np.random.default_rng(0)
    simulated = float(np.mean(rng.binomial(120, 0.05, size=200_000) >= 6))
    assert D.detection_power(120, 0.05, 0.05) == pytest.approx(simulated, abs=0.005)
    n = D.images_for_power(0.05, 0.05, 0.8)
    assert D.detection_power(n, 0.05, 0.05) >= 0.8 > D.detection_power(n - 1, 0.05, 0.05)


def _leaky(root, copies: int):
    make_split_dataset(root, {"train": {"a": 12, "b": 12}, "val": {"a": 4, "b": 4}}, size=32)
    for i in range(copies):
        label = "ab"[i % 2]
        (root / "val" / label / f"img_{i:03d}.png").write_bytes(
            (root / "train" / label / f"img_{i + 4:03d}.png").read_bytes())


def test_auto_mode_skips_a_probe_that_cannot_be_conclusive_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(probe_analysis, "tensorflow_available", lambda: True)
    trained = []
    monkeypatch.setattr("dsaudit.probe.runner.run_probe", lambda *a, **k: trained.append(a) or {})
    _leaky(tmp_path, copies=3)
    result = scan(tmp_path, AuditConfig(cache=False, jobs=1))
    probe = result.sections["probe"]
    assert trained == [] and probe["status"] == "skipped"
    assert probe["leaked_by_pairs"] == 3
    assert probe["reason"].startswith("3 leaked evaluation image(s) give the probe's McNemar test at most a 0% "
                                      "chance of detecting a 5-point inflation")
    assert "about 157 leaked images would give 80%" in probe["reason"] and "--probe" in probe["reason"]
    stated = [s["text"] for s in result.sections["statements"] if s["topic"] == "probe"]
    assert stated == ["leakage not measured: " + probe["reason"]]
    assert not [f for f in result.findings if f.check_id.startswith("DSA9")]


def test_requested_probe_trains_whatever_the_power(tmp_path, monkeypatch):
    monkeypatch.setattr(probe_analysis, "tensorflow_available", lambda: True)
    trained = []
    monkeypatch.setattr("dsaudit.probe.runner.run_probe",
                        lambda table, sets, settings: trained.append(len(sets.leaked)) or {"status": "failed",
                                                                                           "error": "stub"})
    _leaky(tmp_path, copies=3)
    cfg = AuditConfig(cache=False, jobs=1, select=("DSA201", "DSA202", "DSA901"), probe=ProbeConfig(mode="on"))
    index = build(tmp_path, cfg)
    run_checks(index, cfg)
    assert trained == [3]


def test_probe_on_a_pool_with_validation_split_uses_the_simulated_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(probe_analysis, "tensorflow_available", lambda: True)
    seen = {}

    def fake_run(table, sets, settings):
        seen["splits"] = table["split"].tolist()
        seen["leaked"] = sorted(table["path"].iloc[sets.leaked])
        return {"status": "skipped", "reason": "stub", "source": sets.source}

    monkeypatch.setattr("dsaudit.probe.runner.run_probe", fake_run)
    make_split_dataset(tmp_path, {"": {"a": 10, "b": 10}}, size=32)
    (tmp_path / "b" / "img_099.png").write_bytes((tmp_path / "a" / "img_000.png").read_bytes())  # in b: the tail
    cfg = AuditConfig(cache=False, jobs=1, probe=ProbeConfig(mode="on"), batch=BatchConfig(validation_split=0.2),
                      select=("DSA201", "DSA202", "DSA203", "DSA901"))
    index = build(tmp_path, cfg)
    _, errors, ctx, _ = run_checks(index, cfg)
    assert not errors
    assert seen["splits"] == ["train"] * 16 + ["val"] * 5  # the last 20% in loader order (b's tail)
    assert ctx.sections["probe"]["held_out"].startswith("the last 0.2 of the pool in loader order")
    assert "reason" not in ctx.sections["probe"]  # it got past "needs a train split and a val or test split"


def test_probe_on_a_pool_without_validation_split_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setattr(probe_analysis, "tensorflow_available", lambda: True)
    make_split_dataset(tmp_path, {"": {"a": 4, "b": 4}}, size=32)
    cfg = AuditConfig(cache=False, jobs=1, probe=ProbeConfig(mode="on"), select=("DSA901",))
    findings, _, ctx, _ = run_checks(build(tmp_path, cfg), cfg)
    [f] = findings
    assert f.title == "The probe was requested but did not run"
    assert "add --validation-split F" in f.message and "budget" not in f.message
