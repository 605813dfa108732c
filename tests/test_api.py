"""The Python API: dsaudit.scan() with the CLI's options, typed errors, the Report and its views."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dsaudit
from dsaudit.cli import app
from imagery import make_split_dataset, real_patches, tree_snapshot, write_image

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def leaky(tmp_path):
    """train/val with one copy leaked across the split and one empty file."""
    root = tmp_path / "data"
    make_split_dataset(root, {"train": {"cat": 5, "dog": 5}, "val": {"cat": 2, "dog": 2}}, size=32)
    patch = real_patches(1, size=32, seed=11)[0]
    write_image(root / "train" / "cat" / "leak.png", patch)
    write_image(root / "val" / "cat" / "leak.png", patch)
    (root / "train" / "dog" / "empty.png").write_bytes(b"")
    return root


def test_import_is_lazy_and_never_loads_heavy_modules():
    code = ("import sys, dsaudit; heavy = [m for m in ('pandas', 'numpy', 'tensorflow', 'dsaudit.api', 'PIL') "
            "if m in sys.modules]; print(heavy); r = dsaudit.Report; "
            "print('tensorflow' in sys.modules, sorted(n for n in dsaudit.__all__ if n[0] != '_'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1].startswith("False") and "'scan'" in out[1] and "'DatasetError'" in out[1]


def test_scan_returns_a_report_with_typed_findings(leaky):
    report = dsaudit.scan(leaky, batch_size=4, jobs=1, probe=False)
    assert isinstance(report, dsaudit.Report)
    assert report.passed is False and report.exit_code == 1
    assert all(isinstance(f, dsaudit.Finding) for f in report.findings)
    ids = {f.check_id for f in report.findings}
    assert {"DSA201", "DSA003", "DSA301"} <= ids  # the leak, the empty file, batch arithmetic
    leak = report.by_check("DSA201")[0]
    assert leak.severity == dsaudit.Severity.ERROR
    assert set(leak.paths) >= {"train/cat/leak.png", "val/cat/leak.png"}
    assert leak.evidence["pairs"][0]["a"].endswith("leak.png")
    assert report.by_check(leak.check_name) == report.by_check("dsa201")
    assert "gate FAILED" in repr(report)


def test_options_are_the_config_keys_and_cli_flags(tmp_path):
    keys = dsaudit.option_keys()
    # derived from the config: every setting is a keyword, or (a name two sections share) a key of
    # its section's mapping, which load_config validates
    from dsaudit.api import _section_names, overrides_from_options
    from dsaudit.config import AuditConfig, numeric_settings

    shared = {name for name, dotted in _section_names().items() if len(dotted) > 1}
    for dotted, _, _ in numeric_settings(AuditConfig()):
        section, name = dotted.split(".") if "." in dotted else ("", dotted)
        if name in shared:
            assert name not in keys
            assert overrides_from_options({section: {name: 0.5}}) == {dotted: 0.5}
            with pytest.raises(dsaudit.ConfigError, match="several sections"):
                overrides_from_options({name: 0.5})
        else:
            assert keys[name] == dotted, dotted
    assert keys["batch_size"] == "batch.batch_size" and keys["fail_on"] == "fail_on"
    assert keys["probe_budget"] == "probe.budget_seconds"  # the CLI flag --probe-budget
    assert keys["group_regex"] == "leakage.group_regex"


def test_same_findings_as_the_cli(leaky, tmp_path):
    report = dsaudit.scan(leaky, batch_size=4, validation_split=0.25, jobs=1, probe=False)
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["scan", str(leaky), "-o", str(out), "-f", "json", "-j", "1", "--no-probe",
                                   "--batch-size", "4", "--validation-split", "0.25"], catch_exceptions=False)
    assert res.exit_code == report.exit_code
    cli = json.loads((out / "report.json").read_text())
    assert [f["fingerprint"] for f in cli["findings"]] == [f.fingerprint for f in report.findings]
    assert cli["config"] == report.to_dict()["config"]


def test_section_mappings_and_probe_shorthand(leaky):
    report = dsaudit.scan(leaky, leakage={"near_threshold": 6}, probe=False, jobs=1, fail_on="never",
                          select=["DSA0*", "DSA2*"])
    assert report.result.config["leakage"]["near_threshold"] == 6
    assert report.result.config["probe"]["mode"] == "off"
    assert report.passed  # fail_on never
    assert {f.check_id[:4] for f in report.findings} <= {"DSA0", "DSA2"}


@pytest.mark.parametrize("options, message", [
    ({"batchsize": 32}, "did you mean batch_size"),
    ({"batch_size": 0}, "batch.batch_size (--batch-size) must be an integer >= 1"),
    ({"batch_size": "32"}, "must be an integer, not the string '32'"),
    ({"fail_on": "sometimes"}, "fail_on (--fail-on) must be error, warning, info or never"),
    ({"val_batch_size": 8}, "needs batch.batch_size"),
    ({"select": ["NOPE9*"]}, "match no check"),
    ({"leakage": 3}, "leakage must be a mapping"),
    ({"leakage": {"near_treshold": 3}}, "unknown configuration key leakage.'near_treshold'"),
])
def test_bad_options_raise_config_error(leaky, options, message):
    with pytest.raises(dsaudit.ConfigError) as exc:
        dsaudit.scan(leaky, **options)
    assert message in str(exc.value)


def test_dataset_problems_raise_dataset_error_not_system_exit(tmp_path):
    with pytest.raises(dsaudit.DatasetError, match="does not exist"):
        dsaudit.scan(tmp_path / "missing")
    with pytest.raises(dsaudit.DatasetError, match="empty path"):
        dsaudit.scan("")
    with pytest.raises(dsaudit.DatasetError, match="give a dataset ROOT"):
        dsaudit.scan()
    (tmp_path / "empty").mkdir()
    with pytest.raises(dsaudit.DatasetError):
        dsaudit.scan(tmp_path / "empty")
    with pytest.raises(dsaudit.DatasetError, match="manifest not found"):
        dsaudit.scan(manifest=tmp_path / "nope.csv")


def test_config_file_and_baseline_errors_are_config_errors(leaky, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[tool.dsaudit]\nbatch_size = [", encoding="utf-8")
    with pytest.raises(dsaudit.ConfigError, match="not valid TOML"):
        dsaudit.scan(leaky, config=bad)
    with pytest.raises(dsaudit.ConfigError):
        dsaudit.scan(leaky, baseline=tmp_path / "no-baseline.json", probe=False)


def test_to_pandas_findings_and_pairs(leaky):
    report = dsaudit.scan(leaky, jobs=1, probe=False)
    frame = report.to_pandas()
    assert len(frame) == len(report.findings)
    assert list(frame["fingerprint"]) == [f.fingerprint for f in report.findings]
    assert {"check_id", "severity", "paths", "evidence", "title", "message"} <= set(frame.columns)
    pairs = report.to_pandas("pairs")
    leak_pairs = pairs[pairs["check_id"] == "DSA201"]
    assert len(leak_pairs) >= 1
    row = leak_pairs.iloc[0]
    assert {row["a"], row["b"]} == {"train/cat/leak.png", "val/cat/leak.png"}
    assert {row["split_a"], row["split_b"]} == {"train", "val"}
    with pytest.raises(ValueError):
        report.to_pandas("rows")


def test_to_pandas_on_a_clean_dataset_has_the_columns(tmp_path):
    root = tmp_path / "clean"
    make_split_dataset(root, {"train": {"a": 3, "b": 3}, "val": {"a": 2, "b": 2}}, size=32)
    report = dsaudit.scan(root, jobs=1, select=["DSA2*"])
    assert report.passed
    assert report.to_pandas("pairs").empty and "a" in report.to_pandas("pairs").columns


def test_to_json_save_and_load(leaky, tmp_path):
    before = tree_snapshot(leaky)
    report = dsaudit.scan(leaky, jobs=1, probe=False)
    doc = json.loads(report.to_json())
    assert doc["gate"]["passed"] is False and len(doc["findings"]) == len(report.findings)
    assert json.loads(report.to_json(indent=None)) == doc
    written = report.save(tmp_path / "out", ["json", "html", "md", "sarif", "junit"])
    assert sorted(p.name for p in written) == sorted(
        ["report.json", "report.html", "report.md", "report.sarif", "report.junit.xml"])
    again = dsaudit.load_report(tmp_path / "out" / "report.json")
    assert [f.fingerprint for f in again.findings] == [f.fingerprint for f in report.findings]
    assert tree_snapshot(leaky) == before  # nothing written inside the dataset
    with pytest.raises(dsaudit.ConfigError, match="inside the dataset"):
        report.save(leaky / "reports")
    with pytest.raises(dsaudit.ConfigError, match="unknown format"):
        report.save(tmp_path / "x", "pdf")
    assert tree_snapshot(leaky) == before


def test_repr_html_is_the_report_in_a_sandboxed_frame(leaky):
    report = dsaudit.scan(leaky, jobs=1, probe=False)
    html = report._repr_html_()
    assert html.startswith("<iframe") and html.endswith("</iframe>")
    assert 'sandbox="allow-scripts"' in html and "allow-same-origin" not in html
    # the whole report is inside the attribute, escaped: nothing in it is markup of the notebook page
    assert html.count("<") == 2 and html.count(">") == 2  # <iframe ...> and </iframe>
    from markupsafe import Markup

    srcdoc = Markup(html.split('srcdoc="', 1)[1].rsplit('"></iframe>', 1)[0]).unescape()
    assert srcdoc == report.to_html()
    assert "Content-Security-Policy" in srcdoc and "default-src 'none'" in srcdoc


def test_notes_are_kept(leaky, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DSAUDIT_CACHE_DIR")  # it wins over cache_dir
    (leaky / ".cache").mkdir()
    report = dsaudit.scan(leaky, jobs=1, probe=False, cache_dir=str(leaky / ".cache"), verbose=True)
    assert any("cache" in n for n in report.notes)
    assert "cache" in capsys.readouterr().err
