"""The probe's design and statistics (numpy/scipy only; no TensorFlow, fast)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from dsaudit.probe import design as D


def _table(splits, labels, groups=None):
    n = len(splits)
    return pd.DataFrame({"path": [f"f{i}.png" for i in range(n)], "abs_path": [f"/x/f{i}.png" for i in range(n)],
                         "split": splits, "label": labels, "group": groups or [""] * n,
                         "kind": ["image"] * n, "readable": [True] * n, "bomb": [False] * n})


def _pairs(rows):
    return pd.DataFrame([{"a": a, "b": b, "kind": "exact", "distance": 0.0, "similarity": 1.0,
                          "transform": "", "cross_split": True, "same_label": True} for a, b in rows])


# --- statistics -------------------------------------------------------------------------------
def test_wilson_interval_known_values():
    lo, hi = D.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert D.wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = D.wilson_interval(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2


def test_mcnemar_exact_counts_only_discordant_pairs():
    a = np.array([1] * 10 + [0] * 0 + [1] * 30 + [0] * 20, dtype=bool)
    b = np.array([0] * 10 + [1] * 0 + [1] * 30 + [0] * 20, dtype=bool)
    r = D.mcnemar_exact(a, b)
    assert (r["a_only"], r["b_only"], r["discordant"]) == (10, 0, 10)
    assert r["p_value"] == pytest.approx(2 * 0.5 ** 10)
    # symmetric disagreement: no evidence
    assert D.mcnemar_exact(np.array([1, 0] * 10, bool), np.array([0, 1] * 10, bool))["p_value"] == 1.0
    assert D.mcnemar_exact(np.ones(5, bool), np.ones(5, bool))["p_value"] == 1.0


def test_bootstrap_interval_brackets_difference_and_is_seeded():
    a = np.array([1] * 30 + [0] * 10, dtype=bool)
    b = np.array([1] * 15 + [0] * 25, dtype=bool)
    lo, hi = D.bootstrap_diff_interval(a, b, seed=3)
    assert lo < 0.375 < hi and lo > 0
    assert (lo, hi) == D.bootstrap_diff_interval(a, b, seed=3)
    lo0, hi0 = D.bootstrap_diff_interval(a, a, seed=3)
    assert lo0 == hi0 == 0.0


def test_adjusted_gap_removes_class_mix_effect():
    # class "easy" is always right, "hard" half right; leaked images are all "easy"
    leaked_c = np.ones(10, bool)
    leaked_l = np.array(["easy"] * 10)
    clean_c = np.array([1] * 10 + [1, 0] * 10, bool)
    clean_l = np.array(["easy"] * 10 + ["hard"] * 20)
    naive = D.naive_gap(leaked_c, clean_c)
    assert naive["gap"] == pytest.approx(1 - 20 / 30)
    adj = D.class_adjusted_gap(leaked_c, leaked_l, clean_c, clean_l)
    assert adj["gap"] == pytest.approx(0.0)


def test_per_class_needs_enough_images():
    labels = np.array(["a"] * 12 + ["b"] * 3)
    a = np.ones(15, bool)
    b = np.zeros(15, bool)
    rows = D.per_class(labels, a, b)
    assert [r["label"] for r in rows] == ["a"] and rows[0]["inflation"] == 1.0


def test_jsonable_converts_numpy_and_nan():
    out = D.jsonable({"a": np.int64(3), "b": np.float32(0.5), "c": np.array([1, 2]),
                      "d": float("nan"), "e": (np.bool_(True),)})
    assert out == {"a": 3, "b": 0.5, "c": [1, 2], "d": None, "e": [True]}
    json.dumps(out, allow_nan=False)


# --- who leaks --------------------------------------------------------------------------------
def test_leak_sets_from_pairs_keeps_train_heldout_same_label_pairs():
    t = _table(["train", "train", "train", "val", "val", "val", "test", "train"],
               ["a", "a", "b", "a", "b", "a", "b", "b"])
    pairs = _pairs([(0, 3),   # train-val, same label: leak
                    (4, 1),   # val-train, labels differ: conflicting, not a leak
                    (0, 1),   # train-train: ignored
                    (7, 6),   # train-test, same label: leak
                    (3, 5)])  # val-val: ignored
    s = D.leak_sets_from_pairs(t, pairs)
    assert s.leaked.tolist() == [3, 6]
    assert s.partners == {3: [0], 6: [7]}
    assert s.conflicting == 1
    assert s.clean.tolist() == [5]          # 4 is paired with training (conflicting): not clean
    assert D.cross_split_pair_count(t, pairs) == 3
    assert D.cross_split_pair_count(t, None) == 0


def test_leak_sets_skip_unreadable_images():
    t = _table(["train", "val", "val"], ["a", "a", "a"])
    t.loc[1, "readable"] = False
    s = D.leak_sets_from_pairs(t, _pairs([(0, 1)]))
    assert s.leaked.size == 0 and s.clean.tolist() == [2]


def test_leak_sets_from_groups():
    t = _table(["train", "train", "train", "val", "val", "val"], ["a", "a", "b", "a", "b", "a"],
               ["g1", "g1", "g2", "g1", "g3", ""])
    s = D.leak_sets_from_groups(t)
    assert s.leaked.tolist() == [3] and sorted(s.partners[3]) == [0, 1]
    assert s.clean.tolist() == [4, 5]
    assert s.source == "groups"


# --- the counterfactual design ------------------------------------------------------------------
def _design_case(seed=0):
    rng = np.random.default_rng(0)
    n_train, n_val = 200, 40
    labels = np.array(list(rng.choice(["a", "b", "c"], n_train)) + list(rng.choice(["a", "b", "c"], n_val)))
    splits = ["train"] * n_train + ["val"] * n_val
    t = _table(splits, labels.tolist())
    pairs = [(i, n_train + i) for i in range(n_val) if labels[i] == labels[n_train + i]]
    s = D.leak_sets_from_pairs(t, _pairs(pairs))
    return t, labels, s, D.make_design(s, labels, train_size=120, seed=seed)


def test_design_runs_differ_only_by_partners_and_class_matched_replacements():
    t, labels, s, d = _design_case()
    assert len(d.train_a) == len(d.train_b) == 120
    assert set(d.partners) <= set(d.train_a)
    assert not set(d.partners) & set(d.train_b)
    assert set(d.train_a) - set(d.partners) == set(d.train_b) - set(d.replacements)
    assert D.counts(labels[d.train_a]) == D.counts(labels[d.train_b])
    assert not set(d.replacements) & set(s.partner_set)
    assert set(d.leaked) == set(s.leaked)
    # deterministic for a seed, different for another
    assert np.array_equal(d.train_b, _design_case(0)[3].train_b)
    assert not np.array_equal(d.train_b, _design_case(1)[3].train_b)


def test_design_caps_partners_at_half_the_subsample():
    t, labels, s, _ = _design_case()
    d = D.make_design(s, labels, train_size=20, seed=0)
    assert len(d.partners) <= 10 and len(d.train_a) == len(d.train_b) == 20
    assert any("leaked held-out images" in n for n in d.notes)


# --- budget planning -----------------------------------------------------------------------------
def _plan(available, pool=10_000, per=0.002):
    return D.plan_budget(available, pool, fixed_images=500, load_per_image=0.005,
                         train_per_sample={128: per}, eval_per_sample={128: per / 3}, input_sizes=[128],
                         max_train=5000, max_epochs=20, min_epochs=5, min_train=64)


def test_plan_fits_everything_when_budget_allows():
    p = _plan(10_000)
    assert (p.train_size, p.epochs, p.feasible) == (5000, 20, True)
    assert p.estimate_seconds <= 10_000
    assert any("capped" in c for c in p.cuts)          # 10k available, 5k used


def test_plan_cuts_subsample_then_epochs_and_says_so():
    p = _plan(100)
    assert p.feasible and p.estimate_seconds <= 100
    assert p.train_size < 5000 and p.epochs == 20
    assert any("subsample reduced" in c for c in p.cuts)
    p = _plan(10, per=0.004)
    assert p.estimate_seconds <= 10 or not p.feasible
    assert p.train_size == 64 and p.epochs < 20
    assert any("epochs reduced" in c for c in p.cuts)
    p = _plan(1)
    assert not p.feasible and any("exceeds the budget" in c for c in p.cuts)


# --- the probe never imports TensorFlow unless it runs -------------------------------------------
def test_scan_without_probe_never_imports_tensorflow(tmp_path):
    from imagery import make_split_dataset

    make_split_dataset(tmp_path / "data", {"train": {"a": 4, "b": 4}, "val": {"a": 2, "b": 2}}, size=32)
    code = textwrap.dedent(f"""
        import sys, importlib.util
        from pathlib import Path
        import dsaudit.probe, dsaudit.probe.design, dsaudit.probe.runner
        import dsaudit.checks.probe_check, dsaudit.checks.registry
        from dsaudit.config import load_config
        from dsaudit.checks.registry import all_checks
        all_checks()
        root = Path({str(tmp_path / 'data')!r})
        if importlib.util.find_spec("dsaudit.pipeline") and importlib.util.find_spec("dsaudit.cli"):
            import dsaudit.pipeline, dsaudit.cli
            for mode in ("off", "auto"):
                cfg, _ = load_config(None, overrides={{"probe.mode": mode, "cache": False}})
                result = dsaudit.pipeline.scan(root, cfg)
                probe = result.sections.get("probe", {{}})
                assert probe.get("status") in ("off", "skipped"), probe
        assert dsaudit.probe.tensorflow_available()
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
        assert "dsaudit.probe.model" not in sys.modules
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_probe_check_skips_with_reason_without_leaks(tmp_path):
    """Mode auto with no cross-split pairs: no run, no finding, a section that says why."""
    from probe_data import index_for, probe_context
    from imagery import make_split_dataset

    from dsaudit.checks.probe_check import CHECKS
    from dsaudit.config import AuditConfig

    make_split_dataset(tmp_path, {"train": {"a": 3, "b": 3}, "val": {"a": 2, "b": 2}}, size=32)
    ctx = probe_context(index_for(tmp_path), AuditConfig(), _pairs([]))
    findings = [f for c in CHECKS for f in c().run(ctx)]
    assert findings == []
    assert ctx.sections["probe"]["status"] == "skipped"
    assert "no leakage" in ctx.sections["probe"]["reason"]
    json.dumps(ctx.sections["probe"])


def test_design_with_too_few_non_partners_still_pairs_equal_sizes():
    # 6 training images, 5 of them partners of leaked images: replacements must come from outside
    t = _table(["train"] * 6 + ["val"] * 5, ["a"] * 11)
    s = D.leak_sets_from_pairs(t, _pairs([(i, 6 + i) for i in range(5)]))
    labels = t["label"].to_numpy()
    d = D.make_design(s, labels, train_size=6, seed=0)
    assert len(d.train_a) == len(d.train_b)
    assert len(d.replacements) == len(d.partners) >= 1
    assert not set(d.partners) & set(d.train_b)


def test_equalize_keeps_partners_in_run_a():
    from dsaudit.probe.runner import _equalize

    a, b = _equalize(np.array([1, 2, 3, 9]), np.array([1, 2, 4]), np.array([9]))
    assert len(a) == len(b) == 3 and 9 in a
    a, b = _equalize(np.array([1, 9]), np.array([1, 4, 5]), np.array([9]))
    assert len(a) == len(b) == 2 and 9 in a and 1 in b


def test_probe_requested_without_tensorflow_warns(tmp_path, monkeypatch):
    from probe_data import index_for, pairs_frame, probe_context, random_label_dataset

    import dsaudit.checks.probe_check as pc
    import dsaudit.probe.analysis as pa
    from dsaudit.config import AuditConfig, ProbeConfig
    from dsaudit.findings import Severity

    pairs = random_label_dataset(tmp_path, n_train=8, n_leak=2, n_clean=2)
    index = index_for(tmp_path)
    monkeypatch.setattr(pa, "tensorflow_available", lambda: False)
    for mode, expect in (("on", [Severity.WARNING]), ("auto", [])):
        ctx = probe_context(index, AuditConfig(probe=ProbeConfig(mode=mode)), pairs_frame(index.table, pairs))
        findings = [f for c in pc.CHECKS for f in c().run(ctx)]
        assert [f.severity for f in findings] == expect
        assert "TensorFlow is not installed" in ctx.sections["probe"]["reason"]


def _res(inflation, p, n=60, lo=None, hi=None, equal=True):
    lo = inflation - 0.1 if lo is None else lo
    hi = inflation + 0.1 if hi is None else hi
    return {"status": "ran", "source": "pairs", "seed": 0, "input_size": 32, "equal_training": equal,
            "design": {"train_size_a": 100}, "cuts": [],
            "runs": [{"name": "A", "epochs_done": 20}, {"name": "B", "epochs_done": 20, "clean_accuracy": 0.7}],
            "inflation": {"n": n, "inflation": inflation, "interval": [lo, hi], "p_value": p,
                          "accuracy_with_partners": 0.5 + inflation, "accuracy_without_partners": 0.5},
            "context": {"naive_gap": {"gap": 0.3}, "adjusted_gap": {"gap": 0.2}}}


@pytest.mark.parametrize("res, severity, words", [
    (_res(0.20, 0.001), "error", "inflates the probe's validation accuracy by +20.0"),
    (_res(0.03, 0.01, lo=0.01, hi=0.05), "info", "slightly"),
    (_res(0.02, 0.6, lo=-0.05, hi=0.09), "info", "costs little"),
    (_res(0.10, 0.2, lo=-0.1, hi=0.3), "info", "interval is wide"),
    (_res(0.0, 1.0, n=12, lo=0.0, hi=0.0), "info", "only 12 leaked images"),
    (_res(0.30, 0.001, equal=False), "info", "Inconclusive"),
    (_res(-0.20, 0.001), "info", "No significant inflation"),
])
def test_inflation_verdicts_follow_the_thresholds(res, severity, words):
    from probe_data import probe_context

    from dsaudit.checks.probe_check import ProbeLeakInflation
    from dsaudit.config import AuditConfig

    ctx = probe_context(None, AuditConfig(), outcome={"status": "ran", "leakage": res})
    (f,) = list(ProbeLeakInflation().run(ctx))
    assert str(f.severity) == severity
    assert words in f.title + " " + f.message
    assert "Context only" in f.message
