"""Judging findings: severity overrides, baselines of accepted findings, and the exit-code gate.

Kept apart from the checks so that what a check measures never depends on how strict a project is.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from dsaudit.findings import CheckError, Finding, Severity

BASELINE_FORMAT = "dsaudit-baseline/1"


class BaselineError(ValueError):
    """The baseline file is missing or malformed (a usage error, exit 2)."""


def apply_overrides(findings: Iterable[Finding], overrides: Mapping[str, str]) -> list[Finding]:
    """Replace the severity of findings whose check ID (or name) has an override."""
    out = []
    for f in findings:
        new = overrides.get(f.check_id) or overrides.get(f.check_name.upper())
        out.append(dataclasses.replace(f, severity=Severity.parse(new)) if new else f)
    return out


def load_baseline(path: Path) -> dict[tuple[str, str], str]:
    """Accepted findings: (check ID, key) -> the severity they were accepted at ("" if unknown)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"baseline file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"baseline file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise BaselineError(f"{path} is not a dsaudit baseline (expected \"format\": \"{BASELINE_FORMAT}\")")
    accepted: dict[tuple[str, str], str] = {}
    for item in data.get("accepted", []):
        key = "\n".join(sorted(item.get("paths") or [])) or item.get("subject") or item.get("title", "")
        accepted[(item["check_id"], key)] = str(item.get("severity") or "")
    return accepted


def apply_baseline(findings: Iterable[Finding], accepted: Mapping[tuple[str, str], str]) -> list[Finding]:
    """Mark findings that match an accepted one (same check ID and same paths or subject). A finding
    whose severity rose since it was accepted is new again, and its message says so: accepting a
    warning never accepts the error it may become."""
    out = []
    for f in findings:
        if (f.check_id, f.key) not in accepted:
            out.append(dataclasses.replace(f, baselined=False))
            continue
        was = accepted[(f.check_id, f.key)]
        try:
            rose = bool(was) and f.severity > Severity.parse(was)
        except ValueError:
            rose = False
        if rose:
            out.append(dataclasses.replace(
                f, baselined=False, message=f"{f.message} (Severity rose from {was} to {f.severity} since the "
                                            "baseline accepted it.)"))
        else:
            out.append(dataclasses.replace(f, baselined=True))
    return out


def baseline_document(findings: Iterable[Finding]) -> dict[str, Any]:
    items = [{"check_id": f.check_id, "paths": sorted(f.paths), "subject": "" if f.paths else f.key,
              "title": f.title, "severity": str(f.severity)} for f in findings]
    items.sort(key=lambda d: (d["check_id"], d["subject"], d["paths"]))
    return {"format": BASELINE_FORMAT, "accepted": items}


def gate(findings: list[Finding], check_errors: list[CheckError], fail_on: str) -> dict[str, Any]:
    """Exit 1 when a finding (not baselined) is at or above `fail_on`, or a check crashed (an audit
    with a crashed check is incomplete and must not pass silently); otherwise 0."""
    counts = {str(s): 0 for s in sorted(Severity, reverse=True)}
    baselined = 0
    for f in findings:
        if f.baselined:
            baselined += 1
        else:
            counts[str(f.severity)] += 1
    failing = 0
    if fail_on != "never":
        threshold = Severity.parse(fail_on)
        failing = sum(1 for f in findings if not f.baselined and f.severity >= threshold)
        failing += len(check_errors)
    return {"fail_on": fail_on, "passed": failing == 0, "exit_code": 0 if failing == 0 else 1,
            "failing": failing, "counts": counts, "baselined": baselined,
            "check_errors": len(check_errors)}
