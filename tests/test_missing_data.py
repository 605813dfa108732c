"""Missing data never passes the gate: a split without images is an error finding (DSA018), and a
root without a single image is exit 2 with one line, as the README promises."""

import json

import pytest
from typer.testing import CliRunner

from dsaudit.cli import app
from imagery import make_split_dataset

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def scan_json(root, tmp_path):
    result = run("scan", root, "-o", tmp_path / "o", "-f", "json", "--no-probe", "-j", "1")
    return result, json.loads((tmp_path / "o" / "report.json").read_text())


def split_findings(report):
    return [f for f in report["findings"] if f["check_id"] == "DSA018"]


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    make_split_dataset(root, {"train": {"cat": 4, "dog": 4}, "val": {"cat": 2, "dog": 2}}, size=32)
    return root


def _empty_val_folder(root):
    for f in (root / "val").rglob("*.png"):
        f.unlink()
    for d in sorted((root / "val").iterdir()):
        d.rmdir()


def _val_classes_without_files(root):
    for f in (root / "val").rglob("*.png"):
        f.unlink()


def _val_only_broken(root):
    for f in (root / "val").rglob("*.png"):
        f.write_bytes(b"not an image")


@pytest.mark.parametrize("damage", [_empty_val_folder, _val_classes_without_files, _val_only_broken],
                         ids=["empty val/", "val class folders without files", "val holds no decodable image"])
def test_an_evaluation_split_without_images_fails_the_gate(data, tmp_path, damage):
    damage(data)
    result, report = scan_json(data, tmp_path)
    found = split_findings(report)
    assert result.exit_code == 1, result.output
    assert [(f["severity"], f["subject"]) for f in found] == [("error", "split:val")]
    assert "val" in found[0]["title"]


def test_splits_with_images_have_no_such_finding(data, tmp_path):
    result, report = scan_json(data, tmp_path)
    assert split_findings(report) == []


@pytest.mark.parametrize("setup", [
    lambda r: ((r / "cat").mkdir(parents=True), (r / "cat" / "notes.txt").write_text("hi"),
               (r / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")),
    lambda r: ((r / "train" / "cat").mkdir(parents=True), (r / "train" / "cat" / "notes.txt").write_text("x"),
               (r / "train" / "cat" / "labels.csv").write_text("a,b\n"), (r / ".DS_Store").write_bytes(b"x")),
], ids=["pool", "splits"])
def test_a_root_without_any_image_is_exit_2_with_one_line(tmp_path, setup):
    root = tmp_path / "data"
    root.mkdir()
    setup(root)
    result = run("scan", root, "-o", tmp_path / "o", "-f", "json", "--no-probe")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "no images" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "o" / "report.json").exists()
    result = run("baseline", root, "-o", tmp_path / "b.json")
    assert result.exit_code == 2 and "no images" in result.output and not (tmp_path / "b.json").exists()


def test_a_manifest_without_any_image_is_exit_2(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.txt").write_text("hello")
    (tmp_path / "m" / "labels.csv").write_text("path,label\na.txt,cat\n")
    result = run("scan", "--manifest", tmp_path / "m" / "labels.csv", "-o", tmp_path / "o", "-f", "json")
    assert result.exit_code == 2 and "no images" in result.output, result.output
