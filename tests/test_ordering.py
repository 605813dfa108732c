"""DSA311-DSA312: tail validation_split in folder-walk order, clustered manifests; and the COVID-CT
acceptance run of `dsaudit scan --batch-size 16 --validation-split 0.2`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from dsaudit.checks.ordering import runs_test
from dsaudit.config import AuditConfig, BatchConfig
from dsaudit.findings import Severity
from dsaudit.pipeline import build, run_checks
from imagery import make_split_dataset, tree_snapshot


def audit(root, select, manifest=None, **batch):
    cfg = AuditConfig(select=tuple(select), jobs=1, batch=BatchConfig(**batch))
    index = build(root, cfg, manifest)
    findings, errors, ctx, _ = run_checks(index, cfg)
    assert not errors, errors
    return [f for f in findings if f.check_id in select], ctx


def write_manifest(root, files, order):
    """files: {label: [Path]}; order: list of (label, i) giving the row order."""
    path = root / "labels.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for label, i in order:
            w.writerow([files[label][i].relative_to(root).as_posix(), label])
    return path


# -- DSA311 tail validation split ------------------------------------------------------------------

def test_tail_split_of_a_pool_validates_on_an_unseen_class(tmp_path):
    make_split_dataset(tmp_path, {"": {"ant": 8, "bee": 8, "cow": 4}}, size=16)
    findings, ctx = audit(tmp_path, ["DSA311"], validation_split=0.2)
    [f] = findings
    ev = f.evidence
    assert f.severity == Severity.ERROR and ev["source"] == "config"
    assert (ev["samples"], ev["split_at"], ev["validation_tail"]) == (20, 16, 4)
    assert ev["only_in_tail"] == ["cow"]
    assert ev["under_represented_in_tail"] == ["ant", "bee"]
    assert ev["per_class"]["cow"] == {"total": 4, "train_side": 0, "validation_tail": 4, "share": 0.2,
                                      "tail_share": 1.0, "tail_ratio": 5.0}
    assert ev["first_tail_path"] == "cow/img_000.png"
    assert "'cow' appears only in the validation tail" in f.message and "shuffle=True" in f.message
    assert ctx.sections["ordering"]["tail_split"]["split_at"] == 16


def test_default_simulation_on_a_pool_is_info_and_splits_layout_is_quiet(tmp_path):
    make_split_dataset(tmp_path / "pool", {"": {"ant": 10, "bee": 10}}, size=16)
    [f] = audit(tmp_path / "pool", ["DSA311"])[0]
    assert f.severity == Severity.INFO and f.evidence["source"] == "default"
    assert f.evidence["validation_split"] == 0.2 and f.evidence["per_class"]["ant"]["validation_tail"] == 0
    assert f.evidence["single_class_tail"]
    make_split_dataset(tmp_path / "splits", {"train": {"ant": 5, "bee": 5}, "val": {"ant": 2, "bee": 2}},
                       size=16)
    assert audit(tmp_path / "splits", ["DSA311"])[0] == []  # no validation_split asked for


def test_tail_split_of_a_shuffled_manifest_is_quiet(tmp_path):
    files = make_split_dataset(tmp_path, {"": {"ant": 10, "bee": 10}}, size=16)[""]
    order = [(lab, i) for i in range(10) for lab in ("ant", "bee")]  # interleaved rows
    manifest = write_manifest(tmp_path, files, order)
    findings, ctx = audit(tmp_path, ["DSA311"], manifest=manifest, validation_split=0.2)
    assert findings == []
    per = ctx.sections["ordering"]["tail_split"]["per_class"]
    assert per["ant"]["validation_tail"] == 2 and per["bee"]["validation_tail"] == 2


def test_tail_split_applies_to_train_when_asked(tmp_path):
    make_split_dataset(tmp_path, {"train": {"ant": 6, "bee": 4}, "test": {"ant": 2, "bee": 2}}, size=16)
    [f] = audit(tmp_path, ["DSA311"], validation_split=0.3)[0]
    assert f.evidence["split"] == "train" and f.evidence["split_at"] == 7
    assert f.evidence["per_class"]["bee"] == {"total": 4, "train_side": 1, "validation_tail": 3,
                                              "share": 0.4, "tail_share": 1.0, "tail_ratio": 2.5}
    assert f.severity == Severity.ERROR and f.evidence["single_class_tail"]


# -- DSA312 clustered manifest -----------------------------------------------------------------------

def test_runs_test_moments_match_random_permutations():
    seq = ["a"] * 12 + ["b"] * 7 + ["c"] * 5
    res = runs_test(seq)
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(4000):
        s = rng.permutation(seq)
        runs.append(1 + int((s[1:] != s[:-1]).sum()))
    assert res["expected_runs"] == pytest.approx(np.mean(runs), abs=0.1)
    assert res["variance"] == pytest.approx(np.var(runs), rel=0.08)
    assert res["runs"] == 3 and res["p_value"] < 1e-6
    two = runs_test(["x"] * 6 + ["y"] * 4)  # two-class Wald-Wolfowitz: E = 1 + 2*6*4/10
    assert two["expected_runs"] == pytest.approx(5.8)
    assert two["variance"] == pytest.approx(2 * 24 * (48 - 10) / (100 * 9))


def test_sorted_manifest_is_clustered(tmp_path):
    files = make_split_dataset(tmp_path, {"": {"ant": 10, "bee": 10, "cow": 10}}, size=16)[""]
    order = [(lab, i) for lab in ("ant", "bee", "cow") for i in range(10)]
    manifest = write_manifest(tmp_path, files, order)
    [f] = audit(tmp_path, ["DSA312"], manifest=manifest)[0]
    ev = f.evidence
    assert f.severity == Severity.WARNING and ev["column"] == "label"
    assert ev["runs"] == 3 and ev["sorted"] and ev["expected_runs"] == pytest.approx(30 - 270 / 30)
    assert ev["p_value"] < 0.001 and "sorted by label" in f.title


def test_shuffled_manifest_is_not_clustered(tmp_path):
    files = make_split_dataset(tmp_path, {"": {"ant": 10, "bee": 10, "cow": 10}}, size=16)[""]
    order = [(lab, i) for lab in ("ant", "bee", "cow") for i in range(10)]
    rng = np.random.default_rng(3)
    order = [order[i] for i in rng.permutation(len(order))]
    manifest = write_manifest(tmp_path, files, order)
    findings, ctx = audit(tmp_path, ["DSA312"], manifest=manifest)
    assert findings == []
    res = ctx.sections["ordering"]["manifest_runs"]["pool:label"]
    assert res["p_value"] > 0.001 and res["runs"] > 0.5 * res["expected_runs"]


def test_manifest_grouped_by_patient_is_info(tmp_path):
    files = make_split_dataset(tmp_path, {"": {"ant": 15, "bee": 15}}, size=16)[""]
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "group"])
        for i in range(15):  # labels alternate, groups come in blocks of 6 rows
            for j, lab in enumerate(("ant", "bee")):
                row = 2 * i + j
                w.writerow([files[lab][i].relative_to(tmp_path).as_posix(), lab, f"p{row // 6}"])
    findings, ctx = audit(tmp_path, ["DSA312"], manifest=path)
    [f] = findings
    assert f.severity == Severity.INFO and f.evidence["column"] == "group"
    assert f.evidence["runs"] == 5 and f.evidence["contiguous_blocks"]
    assert ctx.sections["ordering"]["manifest_runs"]["pool:label"]["runs"] == 30


def test_folder_layouts_are_not_runs_tested(tmp_path):
    make_split_dataset(tmp_path, {"": {"ant": 10, "bee": 10}}, size=16)
    assert audit(tmp_path, ["DSA312"])[0] == []


# -- acceptance: the real COVID-CT pool ------------------------------------------------------------

@pytest.mark.slow
def test_covid_ct_tail_split_and_batch_arithmetic(covid_ct, tmp_path):
    before = tree_snapshot(covid_ct)
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-c", "from dsaudit.cli import main; main()", "scan", str(covid_ct),
                           "--batch-size", "16", "--validation-split", "0.2", "--out", str(out),
                           "--format", "json", "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # the tail split holds one class: an error fails the gate
    assert tree_snapshot(covid_ct) == before
    report = json.loads((out / "report.json").read_text())
    found = {}
    for f in report["findings"]:
        found.setdefault(f["check_id"], []).append(f)
    [tail] = found["DSA311"]
    ev = tail["evidence"]
    assert tail["severity"] == "error" and ev["samples"] == 746
    assert (ev["split_at"], ev["validation_tail"]) == (596, 150)
    assert ev["per_class"]["CT_COVID"]["train_side"] == 349 and ev["per_class"]["CT_COVID"]["validation_tail"] == 0
    assert ev["per_class"]["CT_NonCOVID"]["train_side"] == 247
    assert ev["per_class"]["CT_NonCOVID"]["validation_tail"] == 150
    assert ev["under_represented_in_tail"] == ["CT_COVID"] and ev["single_class_tail"]
    sets = {r["name"]: r for r in report["sections"]["batching"]["sets"]}
    assert "pool" not in sets  # fit(validation_split=0.2) never iterates the whole pool: its two sides are checked
    head = sets["pool (train side of validation_split)"]
    assert (head["samples"], head["remainder"], head["steps"], head["last_batch"]) == (596, 4, 38, 4)
    assert head["recommendation"]["largest_exact"] == 4
    val = sets["pool (validation tail)"]
    assert (val["samples"], val["remainder"], val["steps"], val["last_batch"]) == (150, 6, 10, 6)
    assert val["recommendation"]["largest_exact"] == 15 and val["recommendation"]["nearest_exact_above"] == 25
    assert len(found["DSA301"]) == 2 and all(f["severity"] == "info" for f in found["DSA301"])
    # the format shortcut the issue describes: COVID almost all PNG, the other class half JPEG
    fmt = [f for f in found["DSA120"] if f["evidence"]["property"] == "format"]
    assert fmt and fmt[0]["evidence"]["per_class"]["CT_NonCOVID"]["top_level"] == "JPEG"
    assert "balance" in report["sections"] and report["sections"]["balance"]["splits"]["pool"]["total"] == 746
