"""The command line end to end: exit codes, bad input, outputs, config, baseline, read-only scans."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dsaudit import __version__
from dsaudit.cli import app
from imagery import make_split_dataset, real_patches, tree_snapshot, write_image

runner = CliRunner()


def run(*args, cwd=None):
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    make_split_dataset(root, {"train": {"cat": 4, "dog": 4}, "val": {"cat": 2, "dog": 2}}, size=32)
    return root


def broken(root):
    (root / "train" / "cat" / "empty.png").write_bytes(b"")


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"dsaudit {__version__}"


def test_clean_scan_passes_and_writes_json(data, tmp_path):
    out = tmp_path / "out"
    result = run("scan", data, "--out", out, "-f", "json", "-j", "1")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    for key in ("schema_version", "dsaudit_version", "root", "layout", "summary", "findings",
                "check_errors", "gate"):
        assert key in report
    assert report["layout"]["kind"] == "splits"
    assert report["summary"]["counts"] == {"train": {"cat": 4, "dog": 4}, "val": {"cat": 2, "dog": 2}}


def test_gate_fails_with_exit_1_and_fail_on_controls_it(data, tmp_path):
    broken(data)
    assert run("scan", data, "-o", tmp_path / "o1", "-f", "json").exit_code == 1
    assert run("scan", data, "-o", tmp_path / "o2", "-f", "json", "--fail-on", "never").exit_code == 0
    # only an info finding: passes at error, fails at info
    (data / "train" / "cat" / "empty.png").unlink()
    (data / "train" / ".DS_Store").write_bytes(b"x")
    assert run("scan", data, "-o", tmp_path / "o3", "-f", "json", "--select", "DSA0*").exit_code == 0
    assert run("scan", data, "-o", tmp_path / "o4", "-f", "json", "--select", "DSA0*",
               "--fail-on", "info").exit_code == 1


@pytest.mark.parametrize("setup, message", [
    (lambda p: p / "nope", "does not exist"),
    (lambda p: write_image(p / "x.png", real_patches(1, 32)[0]), "not a folder"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no class folders"),
])
def test_unusable_root_is_exit_2_with_one_line(tmp_path, setup, message):
    result = run("scan", setup(tmp_path), "-o", tmp_path / "out")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_usage_errors_are_exit_2(data, tmp_path):
    assert run("scan", data, "-o", tmp_path / "o", "--fail-on", "sometimes").exit_code == 2
    assert run("scan", data, "-o", tmp_path / "o", "--format", "pdf").exit_code == 2
    result = run("scan", data, "-o", tmp_path / "o", "--select", "DSA999")
    assert result.exit_code == 2 and "match no check" in result.output
    assert run("scan", data, "-o", tmp_path / "o", "--validation-split", "1.5").exit_code == 2
    assert run("scan", data, "-o", tmp_path / "o", "--group-regex", "(").exit_code == 2
    assert run("scan").exit_code == 2
    result = run("scan", "--manifest", tmp_path / "missing.csv", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "manifest not found" in result.output


def test_reports_are_never_written_inside_the_dataset(data):
    result = run("scan", data, "--out", data / "reports")
    assert result.exit_code == 2 and "inside the dataset" in result.output
    # the default report folder (reports/<name> under the current folder) is refused inside ROOT too
    result = run("scan", ".", cwd=data)
    assert result.exit_code == 2 and not (data / "reports").exists()


def test_default_out_is_reports_root_name_under_cwd(data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    assert run("scan", data, "-f", "json", cwd=work).exit_code == 0
    assert (work / "reports" / "data" / "report.json").is_file()


def test_scan_never_changes_the_dataset(data, tmp_path):
    broken(data)
    write_image(data / "val" / "dog" / "copy.png", real_patches(1, 32)[0])
    before = tree_snapshot(data)
    for extra in ([], ["--no-cache"], ["-f", "json,html,junit,md"]):
        run("scan", data, "-o", tmp_path / "out", *extra)
    assert tree_snapshot(data) == before


def test_config_file_thresholds_select_and_severity_override(data, tmp_path):
    broken(data)
    (data.parent / "dsaudit.toml").write_text(
        '[tool.dsaudit]\nseverity = { DSA003 = "warning" }\nignore = ["DSA1*", "DSA3*", "DSA4*"]\n'
        '[tool.dsaudit.integrity]\nmin_side = 8\n')
    out = tmp_path / "o"
    result = run("scan", data, "-o", out, "-f", "json")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [(f["check_id"], f["severity"]) for f in report["findings"]] == [("DSA003", "warning")]
    assert report["config"]["integrity"]["min_side"] == 8
    (data.parent / "dsaudit.toml").write_text("[tool.dsaudit]\nmin_sidee = 3\n")
    result = run("scan", data, "-o", out)
    assert result.exit_code == 2 and "unknown configuration key" in result.output


def test_baseline_accepts_known_findings_and_fails_on_new_ones(data, tmp_path):
    broken(data)
    base = tmp_path / "baseline.json"
    assert run("baseline", data, "-o", base).exit_code == 0
    doc = json.loads(base.read_text())
    assert doc["format"] == "dsaudit-baseline/1" and doc["accepted"]
    assert run("scan", data, "-o", tmp_path / "o", "-f", "json", "--baseline", base).exit_code == 0
    (data / "val" / "dog" / "empty2.png").write_bytes(b"")
    result = run("scan", data, "-o", tmp_path / "o", "-f", "json", "--baseline", base)
    assert result.exit_code == 1
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    failing = [f["paths"] for f in report["findings"] if not f["baselined"] and f["severity"] == "error"]
    assert failing == [["val/dog/empty2.png"]]
    assert run("scan", data, "-o", tmp_path / "o", "--baseline", tmp_path / "nope.json").exit_code == 2


def test_baseline_is_written_atomically_beside_the_old_one(data, tmp_path, monkeypatch):
    """A new file renamed over the old one: a failed write never leaves a truncated baseline."""
    broken(data)
    out = tmp_path / "bl"
    out.mkdir()
    base = out / "baseline.json"
    base.write_text('{"old": true}\n')
    base.chmod(0o640)
    before = base.stat().st_ino
    assert run("baseline", data, "-o", base).exit_code == 0
    assert base.stat().st_ino != before  # replaced by a rename, not rewritten in place
    assert json.loads(base.read_text())["accepted"] and (base.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in out.iterdir()) == ["baseline.json"]  # no temporary file left

    good = base.read_text()
    renames = []

    def failing_replace(src, dst):
        renames.append((os.path.dirname(src), os.path.dirname(dst)))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    result = run("baseline", data, "-o", base)
    assert one_line_error(result, "No space left on device"), result.output
    assert renames == [(str(out), str(out))]  # the temporary file was in the same folder
    assert base.read_text() == good and sorted(p.name for p in out.iterdir()) == ["baseline.json"]


def test_a_report_that_cannot_be_written_leaves_no_temporary_file(data, tmp_path):
    """Reports go through the same atomic writer: a failed one is exit 2 and leaves the folder
    as it was (it used to leave report.json.tmp behind)."""
    out = tmp_path / "o"
    (out / "report.json").mkdir(parents=True)   # a folder where the report should go
    result = run("scan", data, "-o", out, "--no-probe", "--format", "json")
    assert one_line_error(result, "is a folder, not a regular file"), result.output
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


@pytest.mark.parametrize("args", [
    ["scan", ""], ["scan", "file://"], ["scan", "--manifest", ""], ["baseline", "", "-o", "{tmp}/b.json"],
    ["baseline", "file://", "-o", "{tmp}/b.json"], ["baseline", "--manifest", "", "-o", "{tmp}/b.json"],
    ["demo", "", "-o", "{tmp}/o", "-q"],
], ids=lambda a: " ".join(a[:3]))
def test_an_empty_root_is_exit_2_for_every_command(data, tmp_path, args):
    """An unset shell variable ("$DATA") must not scan, baseline or fill the current folder."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run(*args, cwd=data)  # the current folder is a dataset that would scan fine
    assert one_line_error(result, "empty path"), result.output
    assert not (tmp_path / "b.json").exists() and not (tmp_path / "o").exists()
    assert not (data.parent / "reports").exists() and not (data / "reports").exists()


@pytest.mark.parametrize("args, option", [
    (["scan", "{data}", "-o", ""], "--out"), (["scan", "{data}", "--out", ""], "--out"),
    (["scan", "{data}", "-o", "{tmp}/o", "--cache-dir", ""], "--cache-dir"),
    (["baseline", "{data}", "-o", ""], "--output"), (["demo", "{tmp}/demo", "-o", "", "-q"], "--out"),
], ids=lambda a: " ".join(a[::2]) if isinstance(a, list) else a)
def test_an_empty_output_path_is_exit_2_for_every_command(data, tmp_path, args, option):
    """typer makes "" the current folder: an unset "$OUT" must not put reports, a baseline or a
    cache there."""
    work = tmp_path / "work"
    work.mkdir()
    args = [a.replace("{data}", str(data)).replace("{tmp}", str(tmp_path)) for a in args]
    result = run(*args, cwd=work)
    assert one_line_error(result, f"empty path given for {option}"), result.output
    assert list(work.iterdir()) == [] and not (tmp_path / "o").exists() and not (tmp_path / "demo").exists()


def test_baseline_and_reports_are_written_through_a_symlink(data, tmp_path):
    """The file a link points to is replaced (atomically, beside it); the link itself stays a link."""
    broken(data)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "baseline.json").write_text('{"old": true}\n')
    link = tmp_path / "baseline.json"
    link.symlink_to(shared / "baseline.json")
    assert run("baseline", data, "-o", link).exit_code == 0
    assert link.is_symlink() and os.readlink(link) == str(shared / "baseline.json")
    assert json.loads((shared / "baseline.json").read_text())["accepted"]
    assert sorted(p.name for p in shared.iterdir()) == ["baseline.json"]  # no temporary file left

    out = tmp_path / "o"
    out.mkdir()
    (out / "report.json").symlink_to(shared / "report.json")  # a dangling link: its target is created
    assert run("scan", data, "-o", out, "-f", "json", "--fail-on", "never").exit_code == 0
    assert (out / "report.json").is_symlink() and json.loads((shared / "report.json").read_text())["findings"]


def test_a_report_linked_into_the_dataset_is_refused(data, tmp_path):
    """Writing through links must not become a way to write into the dataset."""
    out = tmp_path / "o"
    out.mkdir()
    target = data / "train" / "cat" / "notes.json"
    target.write_text("keep")
    (out / "report.json").symlink_to(target)
    before = tree_snapshot(data)
    result = run("scan", data, "-o", out, "-f", "json")
    assert one_line_error(result, "is a link into the dataset"), result.output
    assert tree_snapshot(data) == before and target.read_text() == "keep"


def test_checks_and_explain():
    from dsaudit.checks.registry import all_checks

    result = run("checks")
    assert result.exit_code == 0
    for check in all_checks():
        assert check.id in result.output and check.name in result.output
    result = run("explain", "DSA001")
    assert result.exit_code == 0 and "Why:" in result.output and "Fix:" in result.output
    assert run("explain", "integrity.empty-file").exit_code == 0
    assert run("explain", "DSA999").exit_code == 2


def test_crashing_check_is_recorded_and_fails_the_gate(data, tmp_path, monkeypatch):
    from dsaudit.checks import integrity

    def boom(self, ctx):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(integrity.EmptyFile, "run", boom)
    out = tmp_path / "o"
    result = run("scan", data, "-o", out, "-f", "json", "--select", "DSA0*")
    assert result.exit_code == 1
    report = json.loads((out / "report.json").read_text())
    assert report["check_errors"][0]["check_id"] == "DSA003"
    assert "kaboom" in report["check_errors"][0]["error"]


def test_scan_without_probe_does_not_import_tensorflow(data, tmp_path):
    code = ("import sys; from dsaudit.cli import main; sys.argv=['dsaudit','scan',%r,'-o',%r,'-q','--no-probe'];\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\nprint('ok')"
            % (str(data), str(tmp_path / "o")))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().endswith("ok"), proc.stderr


def one_line_error(result, needle):
    """A usage error: exit 2 and one line that says `needle`, not an internal error."""
    lines = result.output.strip().splitlines()
    return (result.exit_code == 2 and len(lines) == 1 and needle in lines[0]
            and "internal error" not in lines[0])


def test_baseline_to_a_folder_or_below_a_file_is_a_usage_error(data, tmp_path):
    result = run("baseline", data, "-o", tmp_path)
    assert one_line_error(result, "is a folder"), result.output
    (tmp_path / "afile").write_text("x")
    result = run("baseline", data, "-o", tmp_path / "afile" / "baseline.json")
    assert one_line_error(result, "is not a folder"), result.output


def test_demo_into_an_existing_file_is_a_usage_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = run("demo", tmp_path / "afile", "-o", tmp_path / "o", "-q")
    assert one_line_error(result, "is not a folder"), result.output
    result = run("demo", tmp_path / "afile" / "sub", "-o", tmp_path / "o", "-q")
    assert one_line_error(result, "cannot build the demo dataset"), result.output
    assert (tmp_path / "afile").read_text() == "x" and not (tmp_path / "o").exists()


def test_printable_shows_control_characters_as_escapes():
    from dsaudit.render.terminal import printable

    assert printable("a\x1b[31mb\x00c\x7fd\x9be\rf\ng\th") == "a\\x1b[31mb\\x00c\\x7fd\\x9be\\x0df\\x0ag\\x09h"
    assert printable("ça, 猫/ü.png [bold]") == "ça, 猫/ü.png [bold]"


BIDI_AND_ZERO_WIDTH = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u200b\u200c\u200d\ufeff"


def test_printable_shows_bidi_and_zero_width_characters_as_escapes():
    from dsaudit.render.terminal import printable

    assert printable("cat\u202egnp.exe") == "cat\\u202egnp.exe"  # would read "catexe.png"
    shown = printable("".join(BIDI_AND_ZERO_WIDTH))
    assert not any(c in shown for c in BIDI_AND_ZERO_WIDTH)
    assert shown == "".join(f"\\u{ord(c):04x}" for c in BIDI_AND_ZERO_WIDTH)
    assert printable("שלום/مرحبا.png") == "שלום/مرحبا.png"  # right-to-left letters themselves stay


def test_bidi_and_zero_width_file_names_never_reach_the_terminal_raw(data, tmp_path):
    for name in ("spoof\u202egnp.exe", "zero\u200bwidth.png", "iso\u2067late\u2069.png", "bom\ufeff.png"):
        (data / "train" / "cat" / name).write_bytes(b"")  # empty files: DSA003 titles name them
    result = run("scan", data, "-o", tmp_path / "o", "-f", "json", "-v", "--no-probe")
    assert result.exit_code == 1
    out = result.output
    assert not any(c in out for c in BIDI_AND_ZERO_WIDTH), ascii(out)
    for shown in ("spoof\\u202egnp.exe", "zero\\u200bwidth.png", "iso\\u2067late\\u2069.png", "bom\\ufeff.png"):
        assert shown in out, (shown, out)
    result = run("scan", tmp_path / "no\u202esuch", "-o", tmp_path / "o2")
    assert one_line_error(result, "no\\u202esuch") and "\u202e" not in result.output


def test_file_names_never_reach_the_terminal_raw(data, tmp_path):
    for name in ("ansi\x1b[31mRED\x1b[0m.png", "clear\x1b[2J\x1b[Hscreen.png", "cr\rFAKE all good.png",
                 "c1\x9b31mX.png", "[bold red]markup.png"):
        (data / "train" / "cat" / name).write_bytes(b"")  # empty files: DSA003 titles name them
    result = run("scan", data, "-o", tmp_path / "o", "-f", "json", "-v", "--no-probe")
    assert result.exit_code == 1
    out = result.output
    assert not any(c in out for c in "\x1b\r\x9b"), repr(out)
    for shown in ("ansi\\x1b[31mRED\\x1b[0m.png", "clear\\x1b[2J\\x1b[Hscreen.png", "cr\\x0dFAKE all good.png",
                  "c1\\x9b31mX.png", "[bold red]markup.png"):
        assert shown in out, (shown, out)
    # error messages quote paths too
    result = run("scan", tmp_path / "no\x1b[2Jsuch", "-o", tmp_path / "o2")
    assert one_line_error(result, "no\\x1b[2Jsuch") and "\x1b" not in result.output
