"""The explicit list of checks. Registration is by module: each module below exports ``CHECKS``,
a list of Check subclasses, in the order their findings are listed. Checks share results only
through the analyses they declare (``requires``), which the pipeline computes first, so the order
here never decides what a check can see.

Duplicate or malformed IDs and names are an error at import time, and a test keeps it so.
"""

from __future__ import annotations

import fnmatch
import importlib
from typing import Iterable

from dsaudit.checks.base import ID_PATTERN, NAME_PATTERN, Check
from dsaudit.config import AuditConfig, ConfigError

CHECK_MODULES = (
    "dsaudit.checks.integrity",   # DSA0xx
    "dsaudit.checks.duplicates",   # DSA2xx
    "dsaudit.checks.balance",     # DSA1xx
    "dsaudit.checks.batching",    # DSA30x
    "dsaudit.checks.ordering",    # DSA31x
    "dsaudit.checks.shortcuts",   # DSA12x-13x
    "dsaudit.checks.quality",     # DSA40x
    "dsaudit.checks.drift",       # DSA41x
    "dsaudit.checks.content_labels",  # DSA42x-43x
    "dsaudit.checks.probe_check", # DSA9xx
)


class RegistryError(RuntimeError):
    pass


def _load() -> list[type[Check]]:
    checks: list[type[Check]] = []
    for module_name in CHECK_MODULES:
        module = importlib.import_module(module_name)
        checks.extend(getattr(module, "CHECKS", []))
    seen_ids: dict[str, type[Check]] = {}
    seen_names: dict[str, type[Check]] = {}
    for check in checks:
        if not ID_PATTERN.match(check.id):
            raise RegistryError(f"{check.__name__}: malformed check ID {check.id!r} (want DSA + 3 digits)")
        if not NAME_PATTERN.match(check.name):
            raise RegistryError(f"{check.__name__}: malformed check name {check.name!r}")
        if check.id in seen_ids:
            raise RegistryError(f"duplicate check ID {check.id}: {seen_ids[check.id].__name__} "
                                f"and {check.__name__}")
        if check.name in seen_names:
            raise RegistryError(f"duplicate check name {check.name}")
        seen_ids[check.id] = check
        seen_names[check.name] = check
    return checks


_CHECKS: list[type[Check]] | None = None


def all_checks() -> list[type[Check]]:
    global _CHECKS
    if _CHECKS is None:
        _CHECKS = _load()
    return list(_CHECKS)


def get_check(key: str) -> type[Check] | None:
    """Find a check by ID (case-insensitive) or by name."""
    key = key.strip()
    for check in all_checks():
        if check.id == key.upper() or check.name == key.lower():
            return check
    return None


def _matches(check: type[Check], pattern: str) -> bool:
    pattern = pattern.strip()
    return (fnmatch.fnmatchcase(check.id, pattern.upper())
            or fnmatch.fnmatchcase(check.name, pattern.lower()))


def unknown_patterns(patterns: Iterable[str]) -> list[str]:
    """Patterns that match no check at all (a typo in select/ignore is a usage error)."""
    return [p for p in patterns if not any(_matches(c, p) for c in all_checks())]


def select_checks(select: Iterable[str] = (), ignore: Iterable[str] = ()) -> list[type[Check]]:
    """Checks to run: those matching any `select` pattern (all if empty), minus `ignore`.

    Patterns are IDs, names or globs over either (``DSA2*``, ``leak.*``)."""
    select, ignore = list(select), list(ignore)
    chosen = []
    for check in all_checks():
        if select and not any(_matches(check, p) for p in select):
            continue
        if any(_matches(check, p) for p in ignore):
            continue
        chosen.append(check)
    return chosen


def check_severity_keys(cfg: AuditConfig) -> None:
    """Overrides name one check by ID or name, as policy.apply_overrides looks them up: an unknown
    key (a typo, a retired check, a glob) would otherwise change nothing without a word."""
    if not cfg.severity:
        return
    for key in cfg.severity:
        if get_check(key) is None:
            why = ("globs are not accepted here, name each check" if any(c in key for c in "*?[")
                   else "no such check")
            raise ConfigError(f"severity.{key}: {why} (a check ID such as DSA006 or a name such as "
                              "integrity.mixed-colour-modes; see `dsaudit checks`)")
