"""The data every part of dsaudit speaks: severities, findings, check errors and the scan result.

This module imports nothing else from dsaudit on purpose. Checks produce these objects, the
policy judges them, and every renderer (terminal, JSON, HTML, JUnit, Markdown) reads only them,
so a renderer can never depend on how an image was analysed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Mapping

SCHEMA_VERSION = "1.0"


class Severity(IntEnum):
    """How bad a finding is. Ordered, so a gate can say "at or above warning"."""

    INFO = 10
    WARNING = 20
    ERROR = 30

    def __str__(self) -> str:  # "error", not "Severity.ERROR", in every output
        return self.name.lower()

    @classmethod
    def parse(cls, value: "str | Severity") -> "Severity":
        """Accept "error", "ERROR", "Warning" or a Severity; raise ValueError otherwise."""
        if isinstance(value, Severity):
            return value
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {value!r} (expected one of: {names})") from None


@dataclass(frozen=True)
class Finding:
    """One problem found by one check.

    `paths` are relative to the dataset root (display-safe strings). `subject` names what a
    finding without paths is about (for example "split:val" or "class:cat"), so that baselines can
    match findings on identity (check ID plus paths or subject), never on message text.
    """

    check_id: str
    severity: Severity
    title: str
    message: str
    paths: tuple[str, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)
    hint: str = ""
    subject: str = ""
    check_name: str = ""
    baselined: bool = False

    @property
    def key(self) -> str:
        """Stable identity of the finding within its check (used by baselines)."""
        if self.paths:
            return "\n".join(sorted(self.paths))
        return self.subject or self.title

    @property
    def fingerprint(self) -> str:
        """Short hash of check ID + key: stable across runs, message wording and severity."""
        digest = hashlib.sha256(f"{self.check_id}\n{self.key}".encode("utf-8", "backslashreplace"))
        return digest.hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "check_id": self.check_id,
            "check_name": self.check_name,
            "severity": str(self.severity),
            "title": self.title,
            "message": self.message,
            "paths": list(self.paths),
            "evidence": dict(self.evidence),
            "hint": self.hint,
            "subject": self.subject,
            "fingerprint": self.fingerprint,
            "baselined": self.baselined,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Finding":
        return cls(
            check_id=data["check_id"],
            severity=Severity.parse(data["severity"]),
            title=data.get("title", ""),
            message=data.get("message", ""),
            paths=tuple(data.get("paths", ())),
            evidence=dict(data.get("evidence", {})),
            hint=data.get("hint", ""),
            subject=data.get("subject", ""),
            check_name=data.get("check_name", ""),
            baselined=bool(data.get("baselined", False)),
        )


@dataclass(frozen=True)
class CheckError:
    """A check that raised. Recorded, never allowed to crash the scan; counts against the gate."""

    check_id: str
    check_name: str
    error: str
    traceback: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "check_id": self.check_id,
            "check_name": self.check_name,
            "error": self.error,
            "traceback": self.traceback,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckError":
        return cls(data["check_id"], data.get("check_name", ""), data.get("error", ""),
                   data.get("traceback", ""))


@dataclass
class ScanResult:
    """Everything a renderer may read about one scan.

    `layout` and `summary` describe the dataset; `sections` carries JSON-able blocks published by
    checks (batch arithmetic tables, balance tables, probe results) keyed by name; `meta` holds the
    run's metadata (command line, duration, timings, index fingerprint); `gate` the verdict.
    `thumbnails` maps a relative path to a data URI for the HTML gallery and is not written to JSON.
    """

    root: str
    layout: dict[str, Any]
    summary: dict[str, Any]
    findings: list[Finding]
    check_errors: list[CheckError]
    config: dict[str, Any]
    gate: dict[str, Any]
    sections: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    dsaudit_version: str = ""
    schema_version: str = SCHEMA_VERSION
    thumbnails: dict[str, str] = field(default_factory=dict)

    def counts_by_severity(self, include_baselined: bool = False) -> dict[str, int]:
        counts = {str(s): 0 for s in sorted(Severity, reverse=True)}
        for f in self.findings:
            if f.baselined and not include_baselined:
                continue
            counts[str(f.severity)] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "dsaudit_version": self.dsaudit_version,
            "root": self.root,
            "layout": self.layout,
            "summary": self.summary,
            "gate": self.gate,
            "findings": [f.to_dict() for f in self.findings],
            "check_errors": [e.to_dict() for e in self.check_errors],
            "sections": self.sections,
            "config": self.config,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ScanResult":
        return cls(
            root=data["root"],
            layout=dict(data.get("layout", {})),
            summary=dict(data.get("summary", {})),
            findings=[Finding.from_dict(f) for f in data.get("findings", [])],
            check_errors=[CheckError.from_dict(e) for e in data.get("check_errors", [])],
            config=dict(data.get("config", {})),
            gate=dict(data.get("gate", {})),
            sections=dict(data.get("sections", {})),
            meta=dict(data.get("meta", {})),
            dsaudit_version=data.get("dsaudit_version", ""),
            schema_version=data.get("schema_version", SCHEMA_VERSION),
        )
