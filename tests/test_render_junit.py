"""JUnit XML: each check a test case, each finding at/above fail-on a failure, always valid XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dsaudit.findings import Finding, ScanResult, Severity
from dsaudit.render import junit
from test_render_html import XSS_PATH, sample_result


def _cases(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml.encode("utf-8"))
    assert root.tag == "testsuites"
    return {c.get("name").split()[0]: c for c in root.iter("testcase")}


def test_checks_are_test_cases_and_failing_findings_are_failures():
    xml = junit.render(sample_result())
    root = ET.fromstring(xml.encode("utf-8"))
    cases = _cases(xml)
    assert sorted(cases) == ["DSA001", "DSA101", "DSA201", "DSA203", "DSA204", "DSA301", "DSA305"]
    assert [f.get("type") for f in cases["DSA001"].findall("failure")] == ["error"]
    assert cases["DSA201"].find("failure").get("message") == "2 images appear in both train and val"
    # warning below fail-on=error, info, baselined: visible in system-out, not failures
    for cid in ("DSA101", "DSA204", "DSA301"):
        assert cases[cid].find("failure") is None
        assert cases[cid].find("system-out").text
    assert "baselined" in cases["DSA301"].find("system-out").text
    assert cases["DSA305"].find("error").get("message").startswith("ValueError: boom")
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("7", "3", "1")
    assert cases["DSA201"].get("classname") == "dsaudit.leak"
    assert cases["DSA201"].get("time") == "0.250"
    assert "DSA102" not in cases  # documented but not run
    # hostile names survive as text
    assert XSS_PATH in cases["DSA001"].find("failure").text


def test_fail_on_warning_turns_warnings_into_failures_but_not_baselined():
    result = sample_result()
    result.gate["fail_on"] = "warning"
    cases = _cases(junit.render(result))
    assert len(cases["DSA101"].findall("failure")) == 1
    assert cases["DSA301"].find("failure") is None  # baselined
    assert cases["DSA204"].find("failure") is None  # info


def test_fail_on_never_has_no_failures():
    result = sample_result()
    result.gate["fail_on"] = "never"
    assert "<failure" not in junit.render(result)


def test_each_finding_is_its_own_failure():
    result = sample_result()
    result.findings += [Finding("DSA001", Severity.ERROR, f"Unreadable {i}", "m", paths=(f"a/{i}.png",))
                        for i in range(3)]
    cases = _cases(junit.render(result))
    assert len(cases["DSA001"].findall("failure")) == 4


def test_odd_characters_give_valid_xml():
    result = sample_result()
    weird = "train/cat/a\x00b\x1bc\x07]]>&<\udcff\ufffe.png"
    result.findings.append(Finding("DSA001", Severity.ERROR, "bad\x0c title \"quoted\"", "msg\x01",
                                   paths=(weird,), check_name="integrity.unreadable"))
    xml = junit.render(result)
    xml.encode("utf-8")
    cases = _cases(xml)
    texts = [f.text for f in cases["DSA001"].findall("failure")]
    assert any("train/cat/abc]]>&<\\xff\ufffd.png" in t for t in texts)
    titles = [f.get("message") for f in cases["DSA001"].findall("failure")]
    assert 'bad title "quoted"' in titles


def test_bidi_and_zero_width_characters_are_shown_not_obeyed():
    result = sample_result()
    result.findings.append(Finding("DSA001", Severity.ERROR, "Cannot decode spoof\u202egnp.exe", "msg",
                                   paths=("train/cat/zero\u200bwidth\u2066.png",), check_name="integrity.unreadable"))
    xml = junit.render(result)
    assert not any(c in xml for c in "\u202e\u200b\u2066"), ascii(xml)
    failures = _cases(xml)["DSA001"].findall("failure")
    assert "Cannot decode spoof\\u202egnp.exe" in [f.get("message") for f in failures]
    assert any("train/cat/zero\\u200bwidth\\u2066.png" in f.text for f in failures)


def test_empty_result_is_valid():
    result = ScanResult(root="/x", layout={}, summary={}, findings=[], check_errors=[], config={}, gate={})
    root = ET.fromstring(junit.render(result).encode())
    assert root.find("testsuite").get("tests") == "0"


def test_write(tmp_path):
    path = junit.write(sample_result(), tmp_path / "out" / "junit.xml")
    ET.parse(path)


def test_example_workflow_scan_step_runs_and_writes_every_output(tmp_path):
    """The scan step of examples/github-workflow.yml, run as written on a small real dataset."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    from imagery import make_split_dataset

    if shutil.which("bash") is None:
        pytest.skip("bash is not available")
    workflow = (Path(__file__).resolve().parents[1] / "examples" / "github-workflow.yml").read_text()
    step = workflow.split("- name: Audit the dataset", 1)[1].split("run: |", 1)[1].split("\n      - name:", 1)[0]
    assert "dsaudit scan data/" in step and "--format json,html,junit,md" in step
    make_split_dataset(tmp_path / "data", {"train": {"a": 4, "b": 4}, "val": {"a": 2, "b": 2}}, size=32)
    (tmp_path / "data" / "train" / "a" / "empty.png").write_bytes(b"")  # an error: the gate fails
    output = tmp_path / "github_output"
    env = {**os.environ, "GITHUB_OUTPUT": str(output),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(["bash", "-c", step], cwd=tmp_path, env=env, check=True, timeout=120)
    assert output.read_text().strip() == "exit_code=1"
    reports = tmp_path / "dsaudit-report"
    for name in ("report.json", "report.html", "report.junit.xml", "report.md"):
        assert (reports / name).stat().st_size > 0, name
    root = ET.parse(reports / "report.junit.xml").getroot()
    assert int(root.get("failures")) >= 1
    assert "gate failed" in (reports / "report.md").read_text().splitlines()[0]
