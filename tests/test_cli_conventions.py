"""CI conventions of the command line: python -m dsaudit, a report on stdout that machine readers
can trust (-f json -o -), --color and NO_COLOR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagery import make_split_dataset

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    make_split_dataset(root, {"train": {"cat": 3, "dog": 3}, "val": {"cat": 2, "dog": 2}}, size=32)
    (root / "train" / "dog" / "empty.png").write_bytes(b"")  # an error finding: the gate fails
    return root


def dsaudit(*args, env=None, cwd=None):
    inherited = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    full_env = {**inherited, "PYTHONPATH": str(SRC), **(env or {})}
    return subprocess.run([sys.executable, "-m", "dsaudit", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=300)


def test_python_m_dsaudit_is_the_cli():
    res = dsaudit("--version")
    assert res.returncode == 0 and res.stdout.startswith("dsaudit ")
    res = dsaudit("--help")
    assert res.returncode == 0 and "python -m dsaudit" in res.stdout


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_report_on_stdout_is_the_only_thing_there(data, tmp_path, fmt):
    res = dsaudit("scan", data, "-f", fmt, "-o", "-", "-j", "1", "--no-probe", cwd=tmp_path)
    assert res.returncode == 1  # the empty file fails the gate; the exit code is unchanged
    doc = json.loads(res.stdout)  # nothing but the report
    if fmt == "json":
        assert any(f["check_id"] == "DSA003" for f in doc["findings"])
    else:
        assert doc["version"] == "2.1.0"
    assert "Gate" in res.stderr  # the summary went to stderr
    assert not (tmp_path / "reports").exists()  # and no report folder was written


def test_stdout_takes_one_format(data, tmp_path):
    res = dsaudit("scan", data, "-f", "json,html", "-o", "-", cwd=tmp_path)
    assert res.returncode == 2 and "one --format" in res.stderr and res.stdout == ""


def test_quiet_stdout_has_the_report_and_stderr_nothing(data, tmp_path):
    res = dsaudit("scan", data, "-f", "json", "-o", "-", "-q", "-j", "1", "--no-probe", cwd=tmp_path)
    json.loads(res.stdout)
    assert res.stderr == ""


def _has_ansi(text: str) -> bool:
    return "\x1b[" in text


def test_color_always_never_and_no_color(data, tmp_path):
    common = ("scan", data, "-o", tmp_path / "o", "-f", "json", "-j", "1", "--no-probe")
    assert _has_ansi(dsaudit(*common, "--color", "always").stdout)
    assert not _has_ansi(dsaudit(*common, "--color", "never", env={"FORCE_COLOR": "1"}).stdout)
    # auto: a pipe gets no colour; FORCE_COLOR forces it; NO_COLOR wins over that
    assert not _has_ansi(dsaudit(*common).stdout)
    assert _has_ansi(dsaudit(*common, env={"FORCE_COLOR": "1"}).stdout)
    assert not _has_ansi(dsaudit(*common, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).stdout)
    # an explicit --color always is the user's word over the environment
    assert _has_ansi(dsaudit(*common, "--color", "always", env={"NO_COLOR": "1"}).stdout)
    bad = dsaudit(*common, "--color", "rainbow")
    assert bad.returncode == 2 and "--color must be auto, always or never" in bad.stderr
