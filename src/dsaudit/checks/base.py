"""What a check is: a small unit with a stable ID, a readable name, a default severity, and a
docstring whose first line is its summary and whose ``Why:`` and ``Fix:`` paragraphs explain it.

A check reads the index (never the image files) and the analyses it lists in ``requires``
(``dsaudit.analysis``), and yields findings. Thresholds come from the configuration, not from
constants in the check, so that measuring and judging stay apart.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping, TypeVar

from dsaudit.analysis import Analysis
from dsaudit.config import AuditConfig
from dsaudit.findings import Finding, Severity
from dsaudit.index.dataset import DatasetIndex

ID_PATTERN = re.compile(r"^DSA\d{3}$")
NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)+$")
A = TypeVar("A", bound=Analysis)


@dataclass
class CheckContext:
    """What a running check can see and share.

    `results` holds the analyses the check declared in `requires` (and what those need), read with
    ``ctx.result(Duplicates)``; `sections` holds JSON-able blocks that go into the report under
    their name (e.g. "batching"). `artifacts` holds what a check measured beyond its findings for a
    benchmark to inspect (DSA431's whole confident-learning ranking); no check reads it (tests/
    test_architecture.py): what checks share is an Analysis.
    """

    index: DatasetIndex
    config: AuditConfig
    results: Mapping[type, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    notify: Callable[[str], None] | None = None  # tells the user about a long step (the probe)
    timings: dict[str, float] = field(default_factory=dict)  # analysis stage times (meta.timings["analysis.NAME"])

    def result(self, kind: type[A]) -> A:
        """The analysis `kind`, which the running check must list in its `requires`."""
        try:
            return self.results[kind]
        except KeyError:
            raise LookupError(f"the {kind.name!r} analysis is not available here: a check that reads it "
                              f"requires it (requires = ({kind.__name__},))") from None


def _doc_section(doc: str, name: str) -> str:
    match = re.search(rf"^\s*{name}:\s*(.*?)(?=^\s*(?:Why|Fix|Thresholds):|\Z)", doc,
                      flags=re.S | re.M)
    if not match:
        return ""
    return " ".join(line.strip() for line in match.group(1).strip().splitlines())


class Check:
    """Base class. Subclasses set `id`, `name`, `severity` and implement `run`."""

    id: ClassVar[str] = ""
    name: ClassVar[str] = ""
    severity: ClassVar[Severity] = Severity.WARNING
    requires: ClassVar[tuple[type[Analysis], ...]] = ()   # analyses read through ctx.result
    # How reports show this check, declared here so that renderers never test check IDs:
    # `display`, how its findings show their images ("pairs": the evidence's pairs side by side,
    # "images": the finding's paths as a strip, "": none), stamped into each finding's evidence;
    # `family`, the report section it belongs to ("quality", "drift", "outliers", "labels" for the
    # content checks; "" for the main list), given to renderers in meta["checks"].
    display: ClassVar[str] = ""
    family: ClassVar[str] = ""

    def run(self, ctx: CheckContext) -> Iterable[Finding]:  # pragma: no cover - interface
        raise NotImplementedError

    # -- documentation, parsed from the docstring ------------------------------------------
    @classmethod
    def doc(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")

    @classmethod
    def summary(cls) -> str:
        return cls.doc().split("\n", 1)[0].strip()

    @classmethod
    def why(cls) -> str:
        return _doc_section(cls.doc(), "Why")

    @classmethod
    def fix(cls) -> str:
        return _doc_section(cls.doc(), "Fix")

    @classmethod
    def thresholds(cls) -> str:
        return _doc_section(cls.doc(), "Thresholds")

    # -- building findings -------------------------------------------------------------------
    def finding(self, title: str, message: str, *, paths: Iterable[str] = (),
                evidence: Mapping[str, Any] | None = None, hint: str | None = None,
                subject: str = "", severity: Severity | None = None) -> Finding:
        """A finding from this check; the hint defaults to the docstring's Fix paragraph, and the
        evidence says how it is shown (`display`) unless the caller said so."""
        evidence = dict(evidence or {})
        if self.display:
            evidence.setdefault("display", self.display)
        return Finding(
            check_id=self.id,
            severity=severity if severity is not None else self.severity,
            title=title,
            message=message,
            paths=tuple(paths),
            evidence=evidence,
            hint=self.fix() if hint is None else hint,
            subject=subject,
            check_name=self.name,
        )
