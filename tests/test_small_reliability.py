"""The smaller reliability items: baseline options, severity that rose since a baseline, manifest rows
outside the manifest's folder or repeated, the demo's exit and temporary folder, output to a pipe."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsaudit.cli import app
from imagery import make_split_dataset, real_patches, write_image

runner = CliRunner()
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    make_split_dataset(root, {"train": {"cat": 5, "dog": 5}, "val": {"cat": 2, "dog": 2}}, size=32)
    return root


def test_baseline_takes_the_cache_and_scan_options_a_baseline_run_needs(data, tmp_path, monkeypatch):
    monkeypatch.delenv("DSAUDIT_CACHE_DIR")  # the environment wins over --cache-dir
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = tmp_path / "my-cache"
    base = tmp_path / "b.json"
    result = run("baseline", data, "-o", base, "--cache-dir", cache, "--batch-size", "3", "--select", "DSA3*",
                 "--seed", "1", "-j", "1")
    assert result.exit_code == 0, result.output
    assert list(cache.glob("*.sqlite"))  # the cache went where it was told
    accepted = json.loads(base.read_text())["accepted"]
    assert {a["check_id"] for a in accepted} == {"DSA301"}  # batch findings need --batch-size
    result = run("scan", data, "-o", tmp_path / "o", "-f", "json", "--batch-size", "3", "--select", "DSA3*",
                 "--baseline", base, "--fail-on", "info", "--no-cache")
    assert result.exit_code == 0, result.output
    assert run("baseline", data, "-o", base, "--no-cache", "--select", "DSA0*").exit_code == 0


def test_a_finding_whose_severity_rose_is_not_accepted_by_the_baseline(data, tmp_path):
    (data / "train" / ".DS_Store").write_bytes(b"x")  # DSA013 hidden file: info
    base = tmp_path / "b.json"
    assert run("baseline", data, "-o", base, "--select", "DSA013").exit_code == 0
    assert [a["severity"] for a in json.loads(base.read_text())["accepted"]] == ["info"]
    cfg = tmp_path / "dsaudit.toml"
    cfg.write_text('severity = { DSA013 = "error" }\n')
    result = run("scan", data, "-o", tmp_path / "o", "-f", "json", "--select", "DSA013", "--baseline", base,
                 "--config", cfg)
    assert result.exit_code == 1, result.output
    [finding] = json.loads((tmp_path / "o" / "report.json").read_text())["findings"]
    assert not finding["baselined"] and "rose from info to error" in finding["message"]
    # the same severity, or a lower one, stays accepted
    cfg.write_text('severity = { DSA013 = "info" }\n')
    assert run("scan", data, "-o", tmp_path / "o", "-f", "json", "--select", "DSA013", "--baseline", base,
               "--config", cfg, "--fail-on", "info").exit_code == 0


def _manifest_findings(tmp_path, rows):
    (tmp_path / "m" / "labels.csv").write_text("path,label,split\n" + "".join(rows))
    result = run("scan", "--manifest", tmp_path / "m" / "labels.csv", "-o", tmp_path / "o", "-f", "json",
                 "--fail-on", "never", "--no-probe")
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / "o" / "report.json").read_text())


def test_manifest_rows_outside_its_folder_and_repeated_rows_are_reported(tmp_path):
    patches = real_patches(6, size=32, seed=4)
    for i in range(4):
        write_image(tmp_path / "m" / f"img{i}.png", patches[i])
    outside = write_image(tmp_path / "elsewhere" / "far.png", patches[4])
    rows = [f"img{i}.png,{'ab'[i % 2]},train\n" for i in range(4)]
    rows += ["img0.png,a,train\n", "img0.png,a,train\n", f"{outside},b,train\n"]
    report = _manifest_findings(tmp_path, rows)
    by_subject = {f["subject"]: f for f in report["findings"] if f["check_id"] == "DSA015"}
    dup = by_subject["manifest_duplicate_row"]
    assert dup["evidence"]["count"] == 2 and "img0.png" in dup["message"] and "line 2" in dup["message"]
    far = by_subject["manifest_outside_folder"]
    assert far["evidence"]["count"] == 1 and "far.png" in far["message"]
    # a repeated row is not "3 identical files" listing one path three times
    for f in report["findings"]:
        assert len(f["paths"]) == len(set(f["paths"])), f
    assert report["summary"]["files"] == 5


def test_a_manifest_inside_its_folder_without_repeats_gets_no_such_note(tmp_path):
    patches = real_patches(4, size=32, seed=4)
    for i in range(4):
        write_image(tmp_path / "m" / "sub" / f"img{i}.png", patches[i])
    report = _manifest_findings(tmp_path, [f"{tmp_path / 'm' / 'sub' / f'img{i}.png'},{'ab'[i % 2]},train\n"
                                           for i in range(4)])
    assert not [f for f in report["findings"] if f["subject"] in ("manifest_duplicate_row",
                                                                   "manifest_outside_folder")]


def test_demo_says_its_own_exit_is_0_and_leaves_no_temporary_folder(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": SRC, "TMPDIR": str(tmp), "CI": "1",
           "DSAUDIT_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "dsaudit.cli", "demo", "-o", str(tmp_path / "o"), "-q"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert "exit code 1" in last and "exits 0" in last, last   # the gate's code and the demo's own
    assert list(tmp.iterdir()) == [], list(tmp.iterdir())
    assert (tmp_path / "o" / "report.json").is_file()


def test_output_to_a_pipe_is_not_wrapped_at_80_columns(tmp_path):
    root = tmp_path / ("a-long-folder-name-" * 5) / "data"
    make_split_dataset(root, {"train": {"cat": 3, "dog": 3}, "val": {"cat": 2, "dog": 2}}, size=32)
    (root / "train" / "cat" / ("a-file-name-that-is-long-" * 4 + ".png")).write_bytes(b"")
    out = tmp_path / ("reports-in-a-long-folder-" * 3)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env.update(PYTHONPATH=SRC, CI="1")
    proc = subprocess.run([sys.executable, "-m", "dsaudit.cli", "scan", str(root), "-o", str(out), "-f", "json",
                           "--no-probe", "-v"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("dsaudit ") and "root: " in line and "time: " in line for line in lines), lines
    assert any(line.startswith("Reports: ") and line.endswith("report.json") for line in lines), lines
    assert any("DSA003" in line and "a-file-name-that-is-long-" * 4 in line for line in lines), lines
