"""JUnit XML, so CI systems (GitLab, Jenkins, Azure, GitHub test reporters) show findings natively.

Each check is a ``<testcase>`` (``classname`` ``dsaudit.<area>``, name ``DSA201 leak.cross-split``).
Each finding at or above the gate's ``fail_on`` that is not baselined is one ``<failure>`` of its
check's test case; findings below the gate and baselined ones are listed in ``<system-out>`` so
they stay visible without failing the build. A check that raised is an ``<error>``. With
``fail_on = "never"`` nothing fails. The XML is built with ElementTree (so it is always well
formed) after removing characters XML 1.0 cannot carry; undecodable file-name bytes show as ``\\xNN``,
bidi controls and zero-width characters as ``\\uXXXX``.

Reads a :class:`~dsaudit.findings.ScanResult` and nothing else of dsaudit.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Mapping

from dsaudit.findings import Finding, ScanResult, Severity
from dsaudit.render.text import clean as clean_text

MAX_FAILURES_PER_CHECK = 500   # more failures than this are summarised in one last failure
MAX_TEXT = 4000                # characters of one failure body / system-out block

def clean(text: Any) -> str:
    """Text XML 1.0 can carry: control characters stripped, lone surrogates made visible; bidi controls
    and zero-width characters shown as ``\\uXXXX`` so a CI page shows a file name as it is."""
    return clean_text(text)


def _cap(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _threshold(gate: Mapping[str, Any]) -> Severity | None:
    fail_on = str(gate.get("fail_on", "error"))
    if fail_on == "never":
        return None
    try:
        return Severity.parse(fail_on)
    except ValueError:
        return Severity.ERROR


def _describe(f: Finding) -> str:
    lines = [f.message]
    if f.paths:
        shown = list(f.paths[:20])
        lines.append("paths:")
        lines.extend(f"  {p}" for p in shown)
        if len(f.paths) > len(shown):
            lines.append(f"  ... and {len(f.paths) - len(shown)} more")
    elif f.subject:
        lines.append(f"subject: {f.subject}")
    if f.hint:
        lines.append(f"fix: {f.hint}")
    lines.append(f"fingerprint: {f.fingerprint}")
    return _cap(clean("\n".join(lines)))


def _seconds(timings: Any, check_id: str, check_name: str) -> float:
    if isinstance(timings, Mapping):
        nested = timings.get("checks") if isinstance(timings.get("checks"), Mapping) else {}
        for value in (nested.get(check_id), timings.get(check_id), timings.get(check_name)):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    return 0.0


def build(result: ScanResult, *, suite_name: str = "dsaudit") -> ET.Element:
    """The ``<testsuites>`` element for `result`."""
    gate = result.gate or {}
    threshold = _threshold(gate)
    docs = result.meta.get("checks") if isinstance(result.meta.get("checks"), Mapping) else {}
    ran = result.meta.get("checks_run")
    documented = [c for c in docs if c in ran] if isinstance(ran, list) else list(docs)
    ids = sorted(set(documented) | {f.check_id for f in result.findings}
                 | {e.check_id for e in result.check_errors})
    timings = result.meta.get("timings")

    suite = ET.Element("testsuite", name=clean(f"{suite_name}: {result.root}"))
    props = ET.SubElement(suite, "properties")
    for key, value in (("root", result.root), ("fail_on", gate.get("fail_on", "error")),
                       ("passed", gate.get("passed")), ("exit_code", gate.get("exit_code")),
                       ("dsaudit_version", result.dsaudit_version or result.meta.get("dsaudit_version")),
                       ("command", result.meta.get("command")), ("fingerprint", result.meta.get("fingerprint")),
                       ("images", result.summary.get("images"))):
        if value is not None:
            text = str(value).lower() if isinstance(value, bool) else clean(value)
            ET.SubElement(props, "property", name=key, value=text)

    by_check: dict[str, list[Finding]] = {}
    for f in result.findings:
        by_check.setdefault(f.check_id, []).append(f)
    tests = failed_cases = errored_cases = 0
    total_time = 0.0
    for cid in ids:
        doc = docs.get(cid) if isinstance(docs.get(cid), Mapping) else {}
        mine = by_check.get(cid, [])
        errors = [e for e in result.check_errors if e.check_id == cid]
        name = doc.get("name") or next((f.check_name for f in mine if f.check_name), "") or next(
            (e.check_name for e in errors if e.check_name), "")
        area = name.split(".", 1)[0] if "." in name else "checks"
        seconds = _seconds(timings, cid, name)
        total_time += seconds
        case = ET.SubElement(suite, "testcase", classname=clean(f"dsaudit.{area}"),
                             name=clean(f"{cid} {name}".strip()), time=f"{seconds:.3f}")
        tests += 1
        failing = [f for f in mine if not f.baselined and threshold is not None and f.severity >= threshold]
        failing.sort(key=lambda f: (-int(f.severity), f.key))
        for f in failing[:MAX_FAILURES_PER_CHECK]:
            node = ET.SubElement(case, "failure", message=clean(_cap(f.title, 500)), type=str(f.severity))
            node.text = _describe(f)
        if len(failing) > MAX_FAILURES_PER_CHECK:
            rest = len(failing) - MAX_FAILURES_PER_CHECK
            node = ET.SubElement(case, "failure", message=f"{rest} more findings", type="summary")
            node.text = f"{rest} more findings of {cid} are in report.json."
        for e in errors:
            node = ET.SubElement(case, "error", message=clean(_cap(e.error, 500)), type="CheckError")
            node.text = _cap(clean(e.traceback or e.error))
        failed_cases += bool(failing)
        errored_cases += bool(errors)
        failing_ids = {id(f) for f in failing}
        quiet = [f for f in mine if id(f) not in failing_ids]
        if quiet:
            lines = [f"[{f.severity}{', baselined' if f.baselined else ''}] {f.title}: "
                     f"{', '.join(f.paths[:3]) or f.subject}" for f in quiet]
            out = ET.SubElement(case, "system-out")
            out.text = _cap(clean("\n".join(lines)))

    suite.set("tests", str(tests))
    suite.set("failures", str(failed_cases))
    suite.set("errors", str(errored_cases))
    suite.set("skipped", "0")
    duration = result.meta.get("duration_seconds", result.summary.get("duration_seconds"))
    suite.set("time", f"{float(duration) if isinstance(duration, (int, float)) else total_time:.3f}")
    if result.meta.get("started"):
        suite.set("timestamp", clean(result.meta["started"]))
    root = ET.Element("testsuites", name=suite_name, tests=suite.get("tests"),
                      failures=suite.get("failures"), errors=suite.get("errors"), time=suite.get("time"))
    root.append(suite)
    return root


def render(result: ScanResult, *, suite_name: str = "dsaudit") -> str:
    """The JUnit XML document as a string (UTF-8 declared)."""
    root = build(result, suite_name=suite_name)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(result: ScanResult, path: str | Path, **options: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(result, **options), encoding="utf-8")
    return path


__all__ = ["render", "write", "build", "clean"]
