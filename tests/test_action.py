"""The CI conventions: the composite GitHub Action (action.yml) whose run step is action/scan.sh,
run here as GitHub would run it, with fake GITHUB_* files in tmp_path, and the pre-commit hook."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imagery import make_split_dataset, real_patches, write_image

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "action" / "scan.sh"


@pytest.fixture
def leaky(tmp_path):
    root = tmp_path / "work" / "data"
    make_split_dataset(root, {"train": {"cat": 4, "dog": 4}, "val": {"cat": 2, "dog": 2}}, size=32)
    patch = real_patches(1, size=32, seed=5)[0]
    write_image(root / "train" / "cat" / "leak.png", patch)
    write_image(root / "val" / "cat" / "leak.png", patch)
    return root


def run_action(tmp_path: Path, **inputs: str) -> tuple[subprocess.CompletedProcess, str, dict[str, str]]:
    """action/scan.sh with the environment GitHub gives a composite step: GITHUB_STEP_SUMMARY and
    GITHUB_OUTPUT files, GITHUB_ACTION_PATH, the workspace as the working folder."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    summary, output = tmp_path / "step_summary.md", tmp_path / "github_output.txt"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "PYTHONPATH": str(REPO / "src"), "PYTHON": sys.executable,
           "DSAUDIT_CACHE_DIR": os.environ["DSAUDIT_CACHE_DIR"], "CI": "true", "GITHUB_ACTIONS": "true",
           "GITHUB_WORKSPACE": str(work), "GITHUB_ACTION_PATH": str(REPO),
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output),
           "DSAUDIT_INSTALL": "skip", **inputs}
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    outputs = {}
    if output.exists():
        outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return proc, summary.read_text() if summary.exists() else "", outputs


def test_action_yml_runs_the_script_with_every_input_as_environment():
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "scan")
    assert step["shell"] == "bash" and "action/scan.sh" in step["run"]
    assert "${{" not in step["run"]  # inputs reach the shell as variables, never as script text
    script = SCRIPT.read_text()
    read = set(re.findall(r"\bDSAUDIT_[A-Z_]+\b", script)) - {"DSAUDIT_CACHE_DIR"}
    assert set(step["env"]) == read
    for name, value in step["env"].items():
        match = re.fullmatch(r"\$\{\{ inputs\.([a-z-]+) \}\}", value)
        assert match and match.group(1) in action["inputs"], (name, value)
    for out in action["outputs"].values():
        key = re.fullmatch(r"\$\{\{ steps\.scan\.outputs\.([a-z-]+) \}\}", out["value"]).group(1)
        assert f'echo "{key}=' in script


def test_failed_gate_writes_the_summary_and_outputs(leaky, tmp_path):
    proc, summary, outputs = run_action(tmp_path, DSAUDIT_PATH="data", DSAUDIT_ARGS="--no-probe -j 1")
    assert proc.returncode == 1, proc.stderr
    assert "dsaudit: gate failed" in summary and "DSA201" in summary
    assert outputs == {"exit-code": "1", "report-dir": "dsaudit-report", "sarif": "dsaudit-report/report.sarif"}
    report = tmp_path / "work" / "dsaudit-report"
    assert sorted(p.name for p in report.iterdir()) == ["report.html", "report.json", "report.md", "report.sarif"]
    assert json.loads((report / "report.sarif").read_text())["version"] == "2.1.0"


def test_args_fail_input_and_extra_formats(leaky, tmp_path):
    (tmp_path / "work" / "DSA0-decoy").write_text("")  # a glob in the options is never expanded
    proc, summary, outputs = run_action(tmp_path, DSAUDIT_PATH="data", DSAUDIT_FORMATS="json",
                                        DSAUDIT_ARGS="--no-probe -j 1 --select DSA0* --select DSA2*",
                                        DSAUDIT_FAIL="false", DSAUDIT_OUT="out dir")
    assert proc.returncode == 0, proc.stderr  # fail=false: the failed gate does not fail the step
    assert outputs["exit-code"] == "1" and outputs["report-dir"] == "out dir" and "sarif" not in outputs
    assert sorted(p.name for p in (tmp_path / "work" / "out dir").iterdir()) == ["report.json", "report.md"]
    assert "gate failed" in summary
    proc, summary, outputs = run_action(tmp_path, DSAUDIT_PATH="data",
                                        DSAUDIT_ARGS="--no-probe -j 1 --fail-on never")
    assert proc.returncode == 0 and outputs["exit-code"] == "0" and "gate passed" in summary


def test_usage_errors_fail_the_step_even_with_fail_false(tmp_path):
    proc, summary, outputs = run_action(tmp_path, DSAUDIT_PATH="missing", DSAUDIT_FAIL="false")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "could not scan" in summary and outputs["exit-code"] == "2"
    proc, _, _ = run_action(tmp_path)
    assert proc.returncode == 2 and "'path' input" in proc.stderr


def test_install_step_installs_the_actions_own_checkout(leaky, tmp_path):
    """A stand-in python records the pip call and runs everything else with the real one."""
    log = tmp_path / "pip.log"
    shim = tmp_path / "python"
    shim.write_text(f'#!/usr/bin/env bash\nif [ "$1" = -m ] && [ "$2" = pip ]; then '
                    f'echo "$@" >> {shlex.quote(str(log))}; exit 0; fi\nexec {shlex.quote(sys.executable)} "$@"\n')
    shim.chmod(0o755)
    proc, _, _ = run_action(tmp_path, DSAUDIT_PATH="data", DSAUDIT_INSTALL="", PYTHON=str(shim),
                            DSAUDIT_ARGS="--no-probe -j 1 --fail-on never")
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().split()[-1] == str(REPO)
    run_action(tmp_path, DSAUDIT_PATH="data", DSAUDIT_INSTALL="dsaudit==0.1.0", PYTHON=str(shim),
               DSAUDIT_ARGS="--no-probe -j 1 --fail-on never")
    assert log.read_text().splitlines()[-1].split()[-1] == "dsaudit==0.1.0"


def test_pre_commit_hook_entry_runs(leaky, tmp_path):
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "dsaudit" and hook["language"] == "python" and hook["pass_filenames"] is False
    entry = shlex.split(hook["entry"])
    assert entry[0] == "dsaudit"
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "dsaudit" in scripts
    assert re.search(hook["files"], "data/train/cat/x.JPG".lower()) and not re.search(hook["files"], "train.py")
    # pre-commit runs `entry args`, from the repository root
    cmd = [sys.executable, "-m", "dsaudit", *entry[1:], *hook["args"], "--no-probe", "-j", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path / "work", capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 1 and (tmp_path / "work" / ".dsaudit" / "report.md").is_file()
