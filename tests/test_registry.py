"""The registry's rules: unique, well-formed IDs and names, documented Why and Fix, docs in sync."""

from pathlib import Path

from dsaudit.checks import registry
from dsaudit.checks.base import ID_PATTERN, NAME_PATTERN
from dsaudit.checks.catalogue import markdown
from dsaudit.findings import Severity

DOCS = Path(__file__).resolve().parents[1] / "docs" / "checks.md"


def test_ids_and_names_are_unique_and_well_formed():
    checks = registry.all_checks()
    assert len({c.id for c in checks}) == len(checks)
    assert len({c.name for c in checks}) == len(checks)
    for c in checks:
        assert ID_PATTERN.match(c.id) and NAME_PATTERN.match(c.name), c
        assert isinstance(c.severity, Severity)


def test_every_check_documents_what_why_and_fix():
    for c in registry.all_checks():
        assert c.summary(), f"{c.id} has no summary line"
        assert len(c.why()) > 30, f"{c.id} has no Why paragraph"
        assert len(c.fix()) > 15, f"{c.id} has no Fix paragraph"


def test_docs_catalogue_is_generated_from_the_registry():
    assert DOCS.read_text(encoding="utf-8") == markdown(), (
        "docs/checks.md is stale: run `python -m dsaudit.checks.catalogue > docs/checks.md`")


def test_duplicate_ids_are_rejected(monkeypatch):
    import types

    from dsaudit.checks.integrity import EmptyFile

    class Clone(EmptyFile):
        name = "integrity.clone"

    fake = types.ModuleType("fake_checks")
    fake.CHECKS = [Clone]
    monkeypatch.setitem(__import__("sys").modules, "fake_checks", fake)
    monkeypatch.setattr(registry, "CHECK_MODULES", registry.CHECK_MODULES + ("fake_checks",))
    try:
        registry._load()
    except registry.RegistryError as exc:
        assert "duplicate check ID DSA003" in str(exc)
    else:
        raise AssertionError("a duplicate ID was accepted")


def test_selection_by_id_name_and_glob():
    chosen = registry.select_checks(["DSA00?", "integrity.hidden-files"], ["DSA001"])
    assert [c.id for c in chosen] == ["DSA002", "DSA003", "DSA004", "DSA005", "DSA006", "DSA007",
                                      "DSA008", "DSA009", "DSA013"]
    assert registry.unknown_patterns(["DSA0*", "nothing.like-this"]) == ["nothing.like-this"]
