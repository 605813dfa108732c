"""Analyses: measurements over the whole index that several checks judge.

A check lists the analyses it reads in ``requires``; the pipeline computes each analysis that the
selected checks need, once, in dependency order, times it as its own stage (``meta.timings["analysis.duplicates"]``)
and gives each check the results it declared (``ctx.result(Duplicates)``). So ``--select DSA105``
gets the duplicate analysis that a full scan computes, and a check's time is its own judging.

An analysis is a class (usually a frozen dataclass holding its result) with a ``name``, the
analyses it needs itself (``requires``), a ``compute`` classmethod and, if it adds a block to the
report, a ``section`` name and ``report_section()``. It must not open image files: like the checks,
it reads the index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping

if TYPE_CHECKING:  # types only: config and the index do not import this module back
    from dsaudit.config import AuditConfig
    from dsaudit.index.dataset import DatasetIndex


class Analysis:
    """Base class of an analysis result. Subclasses set `name` and implement `compute`."""

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[type["Analysis"], ...]] = ()
    section: ClassVar[str] = ""   # report.json "sections" key of report_section(), if any

    @classmethod
    def compute(cls, index: "DatasetIndex", config: "AuditConfig", results: Mapping[type, "Analysis"],
                notify: Callable[[str], None] | None = None) -> "Analysis":  # pragma: no cover - interface
        """The analysis of `index`; `results` holds the analyses named in `requires`."""
        raise NotImplementedError

    def report_section(self) -> dict[str, Any] | None:
        """The JSON-able block the report shows under `section` (None: nothing)."""
        return None

    def report_statements(self) -> list[dict[str, str]]:
        """One-line notes ({"topic", "text"}) for the report's statements (sections.statements)."""
        return []


def closure(kinds: Iterable[type[Analysis]]) -> list[type[Analysis]]:
    """`kinds` and everything they require, each after what it requires, in first-seen order."""
    order: list[type[Analysis]] = []

    def visit(kind: type[Analysis], path: tuple[type[Analysis], ...]) -> None:
        if kind in path:
            raise ValueError("analyses require each other: " + " -> ".join(k.name for k in path + (kind,)))
        if kind in order:
            return
        for dep in kind.requires:
            visit(dep, path + (kind,))
        order.append(kind)

    for kind in kinds:
        visit(kind, ())
    return order


def plan(checks: Iterable[Any]) -> list[type[Analysis]]:
    """The analyses that `checks` (Check classes) need, in the order they are computed."""
    return closure(kind for check in checks for kind in getattr(check, "requires", ()))
