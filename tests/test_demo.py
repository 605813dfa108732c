"""`dsaudit demo` builds the example dataset and finds every planted flaw, and only those."""

import json

from typer.testing import CliRunner

from dsaudit.cli import app


def test_demo_builds_scans_and_finds_each_family(tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "digits"), "--out", str(out), "-q", "--no-probe"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output  # the demo itself succeeds; its gate fails on purpose
    report = json.loads((out / "report.json").read_text())
    assert report["gate"]["passed"] is False
    found = {f["check_id"] for f in report["findings"]}
    planted = {
        "DSA001", "DSA002", "DSA003", "DSA004", "DSA005", "DSA006", "DSA013",  # integrity
        "DSA201", "DSA202", "DSA203", "DSA204", "DSA205",                     # leakage
        "DSA101", "DSA130", "DSA301", "DSA311",                               # split health
    }
    assert planted <= found, f"missing: {sorted(planted - found)}"
    for name in ("report.json", "report.html", "report.junit.xml", "report.md"):
        assert (out / name).is_file()
    # exact and near-duplicate leaks name the planted files
    leaked = {p for f in report["findings"] if f["check_id"] in ("DSA201", "DSA202") for p in f["paths"]}
    for planted_copy in ("val/zero/copy_of_train_zero_010.png", "val/one/reencoded_one_011.jpg",
                         "val/two/flipped_two_012.png", "test/zero/bright_zero_013.png",
                         "test/one/small_one_014.png"):
        assert planted_copy in leaked
    # no unplanted leakage: every leaked group contains one of the planted copies
    for f in report["findings"]:
        if f["check_id"] in ("DSA201", "DSA202"):
            assert any(p.split("/")[-1].startswith(("copy_", "reencoded_", "flipped_", "bright_", "small_",
                                                    "three_mislabelled")) for p in f["paths"]), f["paths"]
            # ... and nothing else: each planted copy has one source (two writers' zeros chained
            # into a copy's group were once reported)
            assert len(f["paths"]) == 2, f["paths"]


def test_demo_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("x")
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "x"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
