"""The probe end to end at tiny scale (real PNG patches, TensorFlow on CPU).

Datasets (tests/probe_data.py): two classes whose labels are unrelated to the pixels, so only
memorisation can score above chance on a held-out image; 200 training images, 60 validation images
claimed as leaked (byte copies of training images, or fresh patches for the null case), 40 clean.
"""

from __future__ import annotations

import json

import numpy as np

import pytest

pytest.importorskip("tensorflow")

from probe_data import (easy_leak_dataset, index_for, pairs_frame, probe_context,  # noqa: E402
                        random_label_dataset)

from dsaudit.checks.probe_check import CHECKS  # noqa: E402
from dsaudit.config import AuditConfig, ProbeConfig  # noqa: E402
from dsaudit.findings import Severity  # noqa: E402

pytestmark = pytest.mark.slow


def _scan(root, pairs, budget=120.0, groups=None, mode="auto"):
    index = index_for(root)
    if groups is not None:
        index.table["group"] = [groups.get(p, "") for p in index.table["path"]]
    cfg = AuditConfig(seed=0, jobs=2, probe=ProbeConfig(mode=mode, budget_seconds=budget))
    ctx = probe_context(index, cfg, pairs_frame(index.table, pairs) if pairs is not None else None)
    findings = {}
    for check in CHECKS:
        for f in check().run(ctx):
            findings.setdefault(f.check_id, []).append(f)
    section = ctx.sections["probe"]
    json.dumps(section, allow_nan=False)   # JSON-able as report.json needs it
    return findings, section


def test_planted_copies_give_significant_inflation(tmp_path):
    """End to end: a real scan (auto mode) finds the copies, the probe measures what they cost."""
    from dsaudit.config import load_config
    from dsaudit.pipeline import scan

    random_label_dataset(tmp_path, copies=True)
    cfg, _ = load_config(None, overrides={"seed": 0, "cache": False})
    assert cfg.probe.mode == "auto"
    result = scan(tmp_path, cfg)
    report = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    section = report["sections"]["probe"]
    assert section["status"] == "ran" and section["leaked_by_pairs"] >= 58, section
    res = section["leakage"]
    inf = res["inflation"]
    assert inf["inflation"] >= 0.2, inf
    assert inf["p_value"] < 0.01 and inf["interval"][0] > 0
    by_id = {}
    for f in report["findings"]:
        by_id.setdefault(f["check_id"], []).append(f)
    (f,) = by_id["DSA901"]
    assert f["severity"] == "error"
    assert f["evidence"]["inflation"] == inf["inflation"] and "McNemar" in f["message"]
    # both runs recorded with equal sizes, the seed, epochs and time; within budget
    a, b = res["runs"]
    assert (a["name"], b["name"]) == ("A", "B")
    assert a["train_size"] == b["train_size"] and a["epochs_done"] == b["epochs_done"] > 0
    assert a["seed"] == b["seed"] == 0 and a["seconds"] > 0
    assert res["design"]["partner_classes"] == res["design"]["replacement_classes"]
    assert res["within_budget"] and res["cuts"] == []
    # labels are random: the honest probe is near chance on clean images, and says so
    (w,) = by_id["DSA902"]
    assert w["severity"] == "warning"
    assert "DSA904" not in by_id and not report["check_errors"]


def test_same_data_without_copies_shows_no_inflation(tmp_path):
    pairs = random_label_dataset(tmp_path, copies=False)
    findings, section = _scan(tmp_path, pairs)
    inf = section["leakage"]["inflation"]
    assert inf["p_value"] >= 0.05 and inf["interval"][0] <= 0 <= inf["interval"][1], inf
    (f,) = findings["DSA901"]
    assert f.severity == Severity.INFO and "No significant inflation" in f.title


def test_easy_leaked_images_are_not_mistaken_for_inflation(tmp_path):
    pairs = easy_leak_dataset(tmp_path)
    findings, section = _scan(tmp_path, pairs, mode="on")  # 30 leaked: auto would skip it as underpowered
    res = section["leakage"]
    naive = res["context"]["naive_gap"]["gap"]
    assert naive >= 0.3                       # the confounded comparison would cry wolf
    inf = res["inflation"]
    assert inf["p_value"] >= 0.05 and abs(inf["inflation"]) < 0.1, inf
    (f,) = findings["DSA901"]
    assert f.severity == Severity.INFO and "Context only" in f.message
    # the clean images are the hard ones (labels unrelated to pixels): the probe says so
    assert findings["DSA902"][0].severity == Severity.WARNING


def test_group_leakage_through_a_real_scan(tmp_path):
    """End to end through pipeline.scan: groups from --group-regex span train and val -> DSA904."""
    import shutil

    from dsaudit.config import load_config
    from dsaudit.pipeline import scan

    root = tmp_path / "data"
    pairs = random_label_dataset(tmp_path / "src", copies=True)
    renamed = {}
    for k, (t, v) in enumerate(pairs):
        renamed[t] = t.rsplit("/", 1)[0] + f"/p{k:03d}_t.png"
        renamed[v] = v.rsplit("/", 1)[0] + f"/p{k:03d}_v.png"
    for f in (tmp_path / "src").rglob("*.png"):
        rel = f.relative_to(tmp_path / "src").as_posix()
        dst = root / renamed.get(rel, rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
    cfg, _ = load_config(None, overrides={"select": "DSA9*", "seed": 0, "cache": False,
                                          "leakage.group_regex": r"/(p\d+)_",
                                          "probe.budget_seconds": 120})
    result = scan(root, cfg)
    report = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    probe = report["sections"]["probe"]
    assert probe["status"] == "ran" and probe["leaked_by_groups"] == 60
    assert probe["group_leakage"]["inflation"]["p_value"] < 0.01
    ids = {f["check_id"]: f for f in report["findings"]}
    assert ids["DSA904"]["severity"] == "error"
    # the pairs are real copies, and DSA9* gets the duplicate analysis as a full scan does: the pair
    # probe runs too (before analyses were declared, a --select DSA9* probe saw no pairs at all)
    assert probe["leaked_by_pairs"] > 0 and "DSA901" in ids
    assert not report["check_errors"]


def test_probe_respects_a_tight_budget_and_reports_cuts(tmp_path):
    pairs = random_label_dataset(tmp_path, copies=True, n_train=320)
    budget = 8.0
    findings, section = _scan(tmp_path, pairs, budget=budget)
    res = section["leakage"]
    assert res["elapsed_seconds"] <= budget * 1.1 + 1.0, res.get("timings")
    if res["status"] == "ran":          # a slow or busy machine may not fit even the smallest runs
        assert res["cuts"], res
        a, b = res["runs"]
        assert a["epochs_done"] == b["epochs_done"] and a["train_size"] == b["train_size"]
        assert a["epochs_done"] < res["plan"]["epochs"] or res["plan"]["cuts"]
    else:
        assert res["status"] == "skipped" and "too small" in res["reason"]
        assert findings["DSA901"][0].severity == Severity.INFO


def test_too_small_a_budget_is_reported_not_overrun(tmp_path):
    pairs = random_label_dataset(tmp_path, copies=True, n_train=60, n_leak=10, n_clean=10)
    findings, section = _scan(tmp_path, pairs, budget=0.5, mode="on")  # 10 leaked: auto skips
    res = section["leakage"]
    assert res["status"] == "skipped" and "too small" in res["reason"]
    (f,) = findings["DSA901"]
    assert f.severity == Severity.INFO and "budget" in f.message


def test_mode_on_without_leaks_trains_one_run_for_learnability(tmp_path):
    """--probe with nothing leaked: one honest run, which still tells whether labels are learnable."""
    easy_leak_dataset(tmp_path, n_hard=30, n_easy_train=40, n_easy_val=20, n_clean=10)
    findings, section = _scan(tmp_path, [], mode="on", budget=60)
    res = section["leakage"]
    assert [r["name"] for r in res["runs"]] == ["B"] and "inflation" not in res
    learn = res["learnability"]
    assert learn["clean_n"] == 30 and learn["p_value_above_chance"] < 0.05, learn
    assert "DSA901" not in findings and "DSA902" not in findings


def test_lockstep_runs_are_deterministic_and_independent():
    """A run trained beside another equals the same run trained alone (so rebuilding with a seed
    reproduces a run exactly, and B cannot influence A)."""
    from imagery import real_patches

    from dsaudit.probe.model import train_lockstep

    x = np.stack(real_patches(64, 32, seed=5))
    y = np.random.default_rng(5).integers(0, 2, 64)
    alone = train_lockstep([(x[:32], y[:32])], [x], 2, 3, seed=1)[0]
    a, b = train_lockstep([(x[:32], y[:32]), (x[32:], y[32:])], [x], 2, 3, seed=1)
    assert np.array_equal(alone.predictions[0], a.predictions[0])
    assert alone.train_accuracy == a.train_accuracy
    assert a.epochs_done == b.epochs_done == 3


def test_loader_reads_mixed_formats_modes_and_odd_names(tmp_path):
    import os
    import shutil

    from imagery import real_patches, write_image

    from dsaudit.probe.model import load_images

    ps = real_patches(4, 64, seed=2)
    files = [write_image(tmp_path / "a.png", ps[0]), write_image(tmp_path / "b.jpg", ps[1]),
             write_image(tmp_path / "c.webp", ps[2]), write_image(tmp_path / "d.tif", ps[3]),
             write_image(tmp_path / "e.png", ps[0], mode="L"),
             write_image(tmp_path / "f.png", np.dstack([ps[1], np.full((64, 64), 128, np.uint8)]))]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    odd = os.fsencode(str(tmp_path)) + b"/\xff\xfe name.png"
    shutil.copy(files[0], odd)
    paths = [str(f) for f in files] + [str(tmp_path / "bad.png"), os.fsdecode(odd)]
    x, ok = load_images(paths, 32, 1)
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.uint8
    assert ok.tolist() == [True] * 6 + [False, True]
    assert np.array_equal(x[0], x[7])                       # same file under an undecodable name
    assert x[4].std(axis=2).max() == 0 and x[4].mean() > 0  # grey -> RGB
    assert not x[6].any()
