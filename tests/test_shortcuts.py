"""DSA120 (file property predicts the label) and DSA130 (generated augmentation files), end to end."""

from __future__ import annotations

import math

import pytest

from dsaudit.checks.shortcuts import cramers_v, generated_pattern
from dsaudit.config import AuditConfig
from dsaudit.findings import Severity
from dsaudit.pipeline import build, run_checks
from imagery import real_patches, write_image


def audit(root, select):
    cfg = AuditConfig(select=tuple(select), jobs=1)
    index = build(root, cfg)
    findings, errors, ctx, _ = run_checks(index, cfg)
    assert not errors, errors
    return [f for f in findings if f.check_id in select], ctx


def write_class(root, label, patches, fmt="png", mode=None, names=None):
    for i, p in enumerate(patches):
        name = names[i] if names else f"img_{i:03d}.{fmt}"
        write_image(root / label / name, p, mode=mode)


# -- DSA120 ----------------------------------------------------------------------------------------

def test_cramers_v_values():
    perfect = cramers_v([[15, 0], [0, 15]])
    assert perfect["cramers_v"] == pytest.approx(1.0) and perfect["cramers_v_corrected"] == pytest.approx(1.0)
    assert perfect["chi2"] == pytest.approx(30.0) and perfect["p_value"] < 1e-6
    none = cramers_v([[5, 5], [5, 5]])
    assert none["cramers_v"] == 0.0 and none["p_value"] == pytest.approx(1.0)
    # 3 x 2 table by hand: chi2 = 12.5 ... V = sqrt(chi2 / (n * 1))
    t = [[10, 0], [5, 5], [0, 10]]
    res = cramers_v(t)
    assert res["chi2"] == pytest.approx(20.0) and res["cramers_v"] == pytest.approx(math.sqrt(20 / 30))


def test_format_that_predicts_the_class(tmp_path):
    patches = real_patches(30, size=16, seed=1)
    write_class(tmp_path, "cat", patches[:15], "png")
    write_class(tmp_path, "dog", patches[15:], "jpg")
    findings, ctx = audit(tmp_path, ["DSA120"])
    fmt = {f.evidence["property"]: f for f in findings}["format"]
    ev = fmt.evidence
    assert fmt.severity == Severity.WARNING and fmt.subject == "split:pool:format"
    assert ev["table"] == {"JPEG": {"cat": 0, "dog": 15}, "PNG": {"cat": 15, "dog": 0}}
    assert ev["cramers_v"] == pytest.approx(1.0) and ev["p_value"] < 1e-6
    assert ev["property_only_accuracy"] == 1.0 and ev["majority_baseline_accuracy"] == 0.5
    assert ev["per_class"]["dog"] == {"top_level": "JPEG", "top_share": 1.0, "count": 15}
    assert "'cat' is 100.0% PNG" in fmt.message


def test_colour_mode_and_size_that_predict_the_class(tmp_path):
    patches = real_patches(24, size=24, seed=2)
    write_class(tmp_path, "cat", [p[:16, :16] for p in patches[:12]], mode="L")
    write_class(tmp_path, "dog", patches[12:])
    findings, _ = audit(tmp_path, ["DSA120"])
    props = {f.evidence["property"]: f.evidence for f in findings}
    assert props["colour_mode"]["table"] == {"L": {"cat": 12, "dog": 0}, "RGB": {"cat": 0, "dog": 12}}
    assert props["dimensions"]["table"] == {"16x16": {"cat": 12, "dog": 0}, "24x24": {"cat": 0, "dog": 12}}


def test_properties_spread_evenly_are_quiet(tmp_path):
    patches = real_patches(32, size=16, seed=3)
    for k, label in enumerate(("cat", "dog")):
        mine = patches[16 * k:16 * (k + 1)]
        write_class(tmp_path, label, mine[:8], "png")
        write_class(tmp_path, label, mine[8:], "jpg", names=[f"j_{i}.jpg" for i in range(8)])
    findings, ctx = audit(tmp_path, ["DSA120"])
    assert findings == []
    fmt = ctx.sections["shortcuts"]["associations"]["pool:format"]
    assert fmt["table"] == {"JPEG": {"cat": 8, "dog": 8}, "PNG": {"cat": 8, "dog": 8}}
    assert fmt["cramers_v"] == 0.0


# -- DSA130 ----------------------------------------------------------------------------------------

UUID = "0b1c2d3e-1111-4222-8333-444455556666"


def test_generated_file_names_are_reported_per_class(tmp_path):
    patches = iter(real_patches(20, size=16, seed=4))
    write_class(tmp_path, "cat", [next(patches) for _ in range(4)])
    write_class(tmp_path, "cat", [next(patches) for _ in range(3)],
                names=["_0_4829311.png", "_1_9120044.png", "aug_2_7731002.png"])
    write_class(tmp_path, "dog", [next(patches) for _ in range(4)])
    write_class(tmp_path, "dog", [next(patches) for _ in range(3)],
                names=[f"dog_original_d1.jpg_{UUID}.jpg",
                       "x_jpg.rf.0123456789abcdef0123456789abcdef.jpg",
                       "x_jpg.rf.fedcba9876543210fedcba9876543210.jpg"])
    write_class(tmp_path, "dog", [next(patches)], names=["augmented/flip_1.png"])
    [f] = audit(tmp_path, ["DSA130"])[0]
    ev = f.evidence
    assert f.severity == Severity.WARNING and ev["files"] == 7
    assert ev["per_class"]["cat"] == {"files": 3, "patterns": {"keras-save-to-dir": 3}, "class_files": 7,
                                      "share": 3 / 7}
    assert ev["per_class"]["dog"]["patterns"] == {"augmentor": 1, "roboflow-augmented": 2, "aug-name": 1}
    assert "cat/_0_4829311.png" in f.paths and "dog/augmented/flip_1.png" in f.paths
    assert "cat/img_000.png" not in f.paths


def test_ordinary_names_are_not_generated(tmp_path):
    names = ["IMG_20200101_123456.jpg", "case_3_12.png", "august.png", "scan_0001.png",
             "x_jpg.rf.0123456789abcdef0123456789abcdef.jpg", "patient_12_00345.png"]
    patches = real_patches(len(names), size=16, seed=5)
    write_class(tmp_path, "cat", patches, names=names)
    findings, ctx = audit(tmp_path, ["DSA130"])
    assert findings == [] and "generated" not in ctx.sections.get("shortcuts", {})
    assert generated_pattern("cat/_12_4829311.png")[0] == "keras-save-to-dir"


def test_file_size_association_is_only_info(tmp_path):
    # same format, mode and size; one class saved as near-lossless JPEG, the other heavily compressed
    patches = real_patches(24, size=32, seed=6)
    for i, p in enumerate(patches[:12]):
        write_image(tmp_path / "cat" / f"c{i}.jpg", p, quality=98)
    for i, p in enumerate(patches[12:]):
        write_image(tmp_path / "dog" / f"d{i}.jpg", p, quality=10)
    findings, _ = audit(tmp_path, ["DSA120"])
    [f] = findings
    assert f.evidence["property"] == "file_size" and f.severity == Severity.INFO
    assert f.evidence["cramers_v"] == pytest.approx(1.0)
    assert "compression settings" in f.message
