"""SARIF 2.1.0 (``report.sarif``), so code-scanning pages (GitHub, Azure DevOps, GitLab, IDE
viewers) list dataset findings beside code findings.

One ``run`` of the tool ``dsaudit``: every check is a rule (its summary, Why and Fix, its default
severity as the rule's level), every finding a result with the check's rule ID, a level (error,
warning, note for info), its message, the first path as its location and further paths as related
locations (capped), and its stable fingerprint as a partial fingerprint, so a code-scanning page
tracks the same finding across runs. Findings accepted by a baseline are results with an external
suppression. A check that crashed is a tool execution notification and makes the invocation
unsuccessful, as it fails the gate.

Paths are relative to the dataset root. A relative root (``dsaudit scan data/`` in a repository
checkout) is prefixed to them with the ``%SRCROOT%`` base, so the locations point at the files in
the repository; an absolute or remote root is given as the ``DATASETROOT`` base in
``originalUriBaseIds``. Untrusted names are cleaned as in the other reports and percent-encoded
in URIs. The output is checked against the official schema in tests/test_sarif.py.

Reads a :class:`~dsaudit.findings.ScanResult` and nothing else of dsaudit.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any, Mapping
from urllib.parse import quote

from dsaudit.findings import Finding, ScanResult, Severity
from dsaudit.render.text import clean

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
MAX_RELATED = 100          # related locations per result beyond the first path
FINGERPRINT_KEY = "dsauditFingerprint/v1"


def _uri(path: str) -> str:
    """A relative URI reference for a display path (``\\xNN`` escapes and all stay visible)."""
    return quote(clean(path), safe="/")


def _base(root: str) -> tuple[str, str, dict[str, Any]]:
    """(uriBaseId, prefix for relative paths, originalUriBaseIds) for the scanned root."""
    root = clean(root)
    if "://" in root:  # s3://bucket/prefix: the base is the URL itself
        return "DATASETROOT", "", {"DATASETROOT": {"uri": root.rstrip("/") + "/"}}
    if root.startswith("/"):
        return "DATASETROOT", "", {"DATASETROOT": {"uri": "file://" + quote(root.rstrip("/"), safe="/") + "/"}}
    prefix = posixpath.normpath(root.replace("\\", "/"))
    return "%SRCROOT%", "" if prefix == "." else prefix, {}


def _location(path: str, base: str, prefix: str, index: int | None = None) -> dict[str, Any]:
    rel = posixpath.join(prefix, path) if prefix else path
    loc: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": _uri(rel), "uriBaseId": base}}}
    if index is not None:
        loc["id"] = index
    return loc


def _rules(result: ScanResult) -> list[dict[str, Any]]:
    docs: Mapping[str, Any] = result.meta.get("checks") or {}
    ids = sorted(set(docs) | {f.check_id for f in result.findings} | {e.check_id for e in result.check_errors})
    rules = []
    for check_id in ids:
        doc = docs.get(check_id) or {}
        try:
            level = LEVEL[Severity.parse(doc.get("severity", "warning"))]
        except ValueError:
            level = "warning"
        rule: dict[str, Any] = {
            "id": check_id,
            "name": clean(doc.get("name") or check_id),
            "shortDescription": {"text": clean(doc.get("summary") or check_id)},
            "defaultConfiguration": {"level": level},
        }
        if doc.get("why"):
            rule["fullDescription"] = {"text": clean(doc["why"])}
        if doc.get("fix"):
            rule["help"] = {"text": clean(doc["fix"])}
        rules.append(rule)
    return rules


def _result(f: Finding, rule_index: Mapping[str, int], base: str, prefix: str) -> dict[str, Any]:
    text = clean(f.message or f.title)
    if f.hint:
        text += f"\nFix: {clean(f.hint)}"
    res: dict[str, Any] = {
        "ruleId": f.check_id,
        "ruleIndex": rule_index[f.check_id],
        "level": LEVEL.get(f.severity, "warning"),
        "message": {"text": text},
        "partialFingerprints": {FINGERPRINT_KEY: f.fingerprint},
        "properties": {"title": clean(f.title), "checkName": clean(f.check_name),
                       "subject": clean(f.subject), "paths": len(f.paths)},
    }
    if f.paths:
        res["locations"] = [_location(f.paths[0], base, prefix)]
        related = [_location(p, base, prefix, i) for i, p in enumerate(f.paths[1:1 + MAX_RELATED], start=1)]
        if related:
            res["relatedLocations"] = related
    else:  # a finding about a split or a class: located at the dataset root
        res["locations"] = [{"physicalLocation": {"artifactLocation": {"uri": _uri(prefix + "/" if prefix else "./"),
                                                                        "uriBaseId": base}},
                             "message": {"text": clean(f.subject or "dataset")}}]
    if f.baselined:
        res["suppressions"] = [{"kind": "external", "status": "accepted",
                                "justification": "accepted in the dsaudit baseline"}]
        res["baselineState"] = "unchanged"
    return res


def to_document(result: ScanResult) -> dict[str, Any]:
    base, prefix, original = _base(result.root)
    rules = _rules(result)
    rule_index = {r["id"]: i for i, r in enumerate(rules)}
    notifications = [{"level": "error", "message": {"text": clean(f"{e.check_id} {e.check_name} crashed: {e.error}")},
                      "descriptor": {"id": e.check_id}} for e in result.check_errors]
    invocation: dict[str, Any] = {
        "executionSuccessful": not result.check_errors,
        "exitCode": int(result.gate.get("exit_code", 0)),
        "properties": {"gate": {k: result.gate.get(k) for k in ("fail_on", "passed", "counts", "baselined")}},
    }
    if result.meta.get("command"):
        invocation["commandLine"] = clean(result.meta["command"])
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "dsaudit", "version": result.dsaudit_version or "0", "rules": rules}},
        "invocations": [invocation],
        "results": [_result(f, rule_index, base, prefix) for f in result.findings],
        "columnKind": "unicodeCodePoints",
        "properties": {"root": clean(result.root), "layout": result.layout.get("kind", ""),
                       "schemaVersion": result.schema_version},
    }
    if original:
        run["originalUriBaseIds"] = original
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def render(result: ScanResult) -> str:
    return json.dumps(to_document(result), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
