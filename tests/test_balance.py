"""DSA101-DSA105: class balance, split shift, small splits, validation share, effective size.

Each check runs end to end on a small dataset of real PNG files written into tmp_path, once with the
problem and once without, and the numbers in the evidence are checked against hand computations.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from dsaudit.checks.balance import (EffectiveSize, balanced_weights, ci_halfwidth, n_for_halfwidth,
                                    resample_to_median)
from dsaudit.checks.base import CheckContext
from dsaudit.config import AuditConfig, BalanceConfig, BatchConfig
from dsaudit.findings import Severity
from dsaudit.pipeline import build, run_checks
from dsaudit.similarity.duplicates import Duplicates
from imagery import make_split_dataset


def audit(root, select, balance=None, batch=None):
    cfg = AuditConfig(select=tuple(select), jobs=1, balance=BalanceConfig(**(balance or {})),
                      batch=BatchConfig(**(batch or {})))
    index = build(root, cfg)
    findings, errors, ctx, _ = run_checks(index, cfg)
    assert not errors, errors
    return findings, ctx


def only(findings, check_id):
    return [f for f in findings if f.check_id == check_id]


# -- DSA101 class imbalance -------------------------------------------------------------------------

def test_imbalance_warning_with_sklearn_weights_and_resampling(tmp_path):
    make_split_dataset(tmp_path, {"train": {"cat": 12, "dog": 3, "eel": 6}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA101"])
    [f] = only(findings, "DSA101")
    ev = f.evidence
    assert f.severity == Severity.WARNING and f.subject == "split:train"
    assert ev["counts"] == {"cat": 12, "dog": 3, "eel": 6}
    assert ev["imbalance_ratio"] == 4.0 and ev["majority"] == "cat" and ev["minority"] == "dog"
    assert ev["shares"]["cat"] == pytest.approx(12 / 21)
    y = np.array(["cat"] * 12 + ["dog"] * 3 + ["eel"] * 6)
    expected = compute_class_weight("balanced", classes=np.array(["cat", "dog", "eel"]), y=y)
    assert [ev["class_weights"][c] for c in ("cat", "dog", "eel")] == list(expected)  # exactly equal
    assert ev["class_weights"]["dog"] == pytest.approx(21 / (3 * 3))
    rs = ev["resample_to_median"]
    assert rs["target_per_class"] == 6 and rs["total_after"] == 18
    assert rs["duplicated"] == 3 and rs["discarded"] == 6
    assert rs["oversample_only_total"] == 12 + 6 + 6 and rs["undersample_only_total"] == 6 + 3 + 6
    assert "4.00" in f.message
    assert "class_weight = {0: 0.5833333333333334, 1: 2.3333333333333335, 2: 1.1666666666666667}" \
        "  # 0=cat, 1=dog, 2=eel" in f.message
    sec = ctx.sections["balance"]["splits"]["train"]
    assert sec["total"] == 21 and sec["classes"]["dog"] == {"count": 3, "share": 3 / 21, "weight": 21 / 9}


def test_imbalance_error_at_ratio_ten_and_balanced_split_is_quiet(tmp_path):
    make_split_dataset(tmp_path, {"train": {"a": 20, "b": 2}, "val": {"a": 4, "b": 4}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA101"])
    [f] = only(findings, "DSA101")
    assert f.severity == Severity.ERROR and f.evidence["imbalance_ratio"] == 10.0
    assert f.evidence["majority_baseline_accuracy"] == pytest.approx(20 / 22)
    # val is balanced: no finding, but its table is published with weights 1.0
    assert ctx.sections["balance"]["splits"]["val"]["imbalance_ratio"] == 1.0
    assert ctx.sections["balance"]["splits"]["val"]["classes"]["a"]["weight"] == 1.0


def test_below_the_warn_ratio_the_weights_are_info_and_below_1_5_nothing(tmp_path):
    make_split_dataset(tmp_path / "a", {"": {"a": 8, "b": 5}}, size=16)  # ratio 1.6, pool layout
    findings, ctx = audit(tmp_path / "a", ["DSA101"])
    [f] = only(findings, "DSA101")
    assert f.severity == Severity.INFO and f.title == "Class weights for pool (1.6:1, below the warning ratio)"
    assert ctx.sections["balance"]["splits"]["pool"]["imbalance_ratio"] == pytest.approx(1.6)
    make_split_dataset(tmp_path / "b", {"train": {"a": 7, "b": 5}, "val": {"a": 8, "b": 5}}, size=16)  # 1.4
    assert only(audit(tmp_path / "b", ["DSA101"])[0], "DSA101") == []  # val's 1.6 needs no weights


def test_class_weights_are_keyed_by_index_in_loader_order_and_match_sklearn(tmp_path):
    """The pneumonia poster's 'No Pneumonia'/'Yes Pneumonia' dict keyed by name is ignored by Keras."""
    make_split_dataset(tmp_path, {"train": {"PNEUMONIA": 29, "NORMAL": 10, "covid": 4}}, size=16)
    (tmp_path / "train" / "EMPTY").mkdir()
    [f] = only(audit(tmp_path, ["DSA101"])[0], "DSA101")
    ev = f.evidence
    assert ev["class_index"] == {"EMPTY": 0, "NORMAL": 1, "PNEUMONIA": 2, "covid": 3}  # sorted(): 'c' after 'P'
    y = np.array(["NORMAL"] * 10 + ["PNEUMONIA"] * 29 + ["covid"] * 4)
    expected = compute_class_weight("balanced", classes=np.array(["NORMAL", "PNEUMONIA", "covid"]), y=y)
    assert ev["keras_class_weight"] == {1: expected[0], 2: expected[1], 3: expected[2]}  # exactly equal
    namespace: dict = {}
    keras_line = ev["snippet"].splitlines()[1]
    exec(keras_line, namespace)  # the pasted line is valid Python giving the same dict
    assert namespace["class_weight"] == ev["keras_class_weight"]
    assert keras_line.endswith("# 0=EMPTY, 1=NORMAL, 2=PNEUMONIA, 3=covid; no weight for empty class(es) EMPTY")
    w = [repr(float(x)) for x in expected]
    assert f"weight = torch.tensor([0.0, {w[0]}, {w[1]}, {w[2]}])" in ev["snippet"]


def test_helpers_match_formulas():
    counts = {"a": 10, "b": 30, "c": 60}
    w = balanced_weights(counts)
    assert w == {"a": 100 / 30, "b": 100 / 90, "c": 100 / 180}
    rs = resample_to_median({"a": 1, "b": 2, "c": 3, "d": 10})  # median 2.5 rounds half up to 3
    assert rs["target_per_class"] == 3 and rs["duplicated"] == 3 and rs["discarded"] == 7


# -- DSA102 split shift -----------------------------------------------------------------------------

def test_split_shift_chi_square_and_tvd(tmp_path):
    make_split_dataset(tmp_path, {"train": {"a": 30, "b": 30}, "val": {"a": 18, "b": 2}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA102"])
    [f] = only(findings, "DSA102")
    ev = f.evidence
    # expected counts 36/24/12/8 -> chi2 = 1 + 1.5 + 3 + 4.5 = 10 with 1 dof
    assert ev["chi2"] == pytest.approx(10.0) and ev["dof"] == 1
    assert ev["p_value"] == pytest.approx(0.0015654, rel=1e-3)
    assert ev["tvd"] == pytest.approx(0.4)
    assert ev["share_differences"]["a"] == pytest.approx(0.4)
    assert f.subject == "split:val" and "TVD 0.40" in f.title


def test_no_shift_when_proportions_match_or_difference_is_small(tmp_path):
    make_split_dataset(tmp_path, {"train": {"a": 30, "b": 30}, "val": {"a": 11, "b": 9},
                                  "test": {"a": 10, "b": 10}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA102"])
    assert only(findings, "DSA102") == []
    shift = ctx.sections["balance"]["shift"]
    assert shift["val"]["tvd"] == pytest.approx(0.05) and shift["test"]["tvd"] == 0.0


def test_shift_uses_only_shared_classes(tmp_path):
    # 'c' only in train is DSA011's business; among a and b the mix is identical
    make_split_dataset(tmp_path, {"train": {"a": 10, "b": 10, "c": 20}, "val": {"a": 5, "b": 5}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA102"])
    assert only(findings, "DSA102") == []
    assert ctx.sections["balance"]["shift"]["val"]["not_shared"] == ["c"]
    assert ctx.sections["balance"]["shift"]["val"]["tvd"] == 0.0


# -- DSA103 small split ----------------------------------------------------------------------------

def test_small_validation_split_reports_half_widths(tmp_path):
    make_split_dataset(tmp_path, {"train": {"a": 4, "b": 4}, "val": {"a": 16, "b": 4}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA103"])
    [f] = only(findings, "DSA103")
    ev = f.evidence
    assert ev["total"] == 20
    assert ev["ci_halfwidth"] == pytest.approx(1.959964 * math.sqrt(0.25 / 20), rel=1e-6)  # 0.2191
    assert ev["per_class"]["b"]["ci_halfwidth"] == pytest.approx(0.48999, rel=1e-4)
    assert ev["needed_for_bound"] == 385
    assert "+/-21.9 points" in f.message


def test_split_within_bound_is_quiet(tmp_path):
    make_split_dataset(tmp_path, {"train": {"a": 4, "b": 4}, "val": {"a": 10, "b": 10}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA103"], balance={"max_ci_halfwidth": 0.25})
    assert only(findings, "DSA103") == []
    assert ctx.sections["balance"]["confidence"]["val"]["ci_halfwidth"] == pytest.approx(0.21913, rel=1e-4)


def test_ci_size_formula():
    assert n_for_halfwidth(0.05) == 385
    assert ci_halfwidth(385) <= 0.05 < ci_halfwidth(384)


def test_small_split_checks_the_simulated_validation_tail_of_a_pool(tmp_path):
    make_split_dataset(tmp_path, {"": {"a": 10, "b": 10}}, size=16)
    findings, _ = audit(tmp_path, ["DSA103"], batch={"validation_split": 0.2})
    [f] = only(findings, "DSA103")
    assert f.evidence["total"] == 4 and f.evidence["per_class"] == {"b": {"count": 4,
                                                                          "ci_halfwidth": ci_halfwidth(4)}}
    assert f.subject == "split:pool-validation-tail"


# -- DSA104 validation share -----------------------------------------------------------------------

def test_validation_share_too_large(tmp_path):
    make_split_dataset(tmp_path, {"train": {"a": 5, "b": 5}, "val": {"a": 5, "b": 5},
                                  "test": {"a": 2, "b": 2}}, size=16)
    findings, _ = audit(tmp_path, ["DSA104"], batch={"validation_split": 0.6})
    by_subject = {f.subject: f for f in only(findings, "DSA104")}
    assert set(by_subject) == {"split:val", "config:validation_split"}
    assert by_subject["split:val"].evidence["share"] == pytest.approx(10 / 24)
    assert by_subject["split:val"].evidence["sizes"] == {"train": 10, "val": 10, "test": 4}
    assert by_subject["config:validation_split"].evidence["share"] == 0.6


def test_validation_share_in_range_is_quiet(tmp_path):
    make_split_dataset(tmp_path, {"train": {"a": 8, "b": 8}, "val": {"a": 2, "b": 2}}, size=16)
    findings, _ = audit(tmp_path, ["DSA104"], batch={"validation_split": 0.2})
    assert only(findings, "DSA104") == []  # 4 / 20 = 0.2


# -- DSA105 effective size -------------------------------------------------------------------------

def _effective(tmp_path, counts):
    make_split_dataset(tmp_path, {"train": {"a": 3, "b": 3}}, size=16)
    cfg = AuditConfig(select=("DSA105",), jobs=1)
    index = build(tmp_path, cfg)
    # the duplicate analysis as the pipeline hands it over (only its effective counts are read)
    ctx = CheckContext(index=index, config=cfg, results={Duplicates: SimpleNamespace(effective=counts or {})})
    return list(EffectiveSize().run(ctx)), ctx


def test_effective_size_flags_classes_inflated_by_copies(tmp_path):
    findings, ctx = _effective(tmp_path, {("train", "a"): {"raw": 40, "effective": 8},
                                          ("train", "b"): {"raw": 40, "effective": 40},
                                          ("val", "a"): {"raw": 10, "effective": 10}})
    [f] = findings
    assert f.subject == "split:train" and f.evidence["flagged"] == ["a"]
    assert f.evidence["per_class"]["a"] == {"raw": 40, "effective": 8, "ratio": 0.2}
    assert f.evidence["effective_imbalance_ratio"] == 5.0 and f.evidence["raw_imbalance_ratio"] == 1.0
    assert f.evidence["effective_class_weights"] == {"a": 48 / 16, "b": 48 / 80}
    assert "'a' 40 files but 8 distinct" in f.message
    assert ctx.sections["balance"]["effective"]["val"]["per_class"]["a"]["ratio"] == 1.0


def test_effective_size_quiet_without_duplicates(tmp_path):
    findings, _ = _effective(tmp_path, {("train", "a"): {"raw": 12, "effective": 12},
                                        ("train", "b"): {"raw": 12, "effective": 12}})
    assert findings == []
    findings, ctx = _effective(tmp_path / "again", None)
    assert findings == [] and "balance" not in ctx.sections
