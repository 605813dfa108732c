"""SARIF 2.1.0 output (-f sarif) against the official schema (vendored in tests/data), and what a
code-scanning page needs from it: rules, levels, locations, fingerprints, suppressions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from dsaudit.cli import app
from dsaudit.render import sarif
from imagery import make_split_dataset, real_patches, write_image
from test_render_html import XSS_PATH, sample_result

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))


# RFC 3986 URI-reference characters, with %XX escapes only: jsonschema checks the schema's
# "uri-reference" format only when an optional package is installed, so it is checked here too
URI_REFERENCE = re.compile(r"^(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$")


def _uris(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "uri":
                yield v
            else:
                yield from _uris(v)
    elif isinstance(node, list):
        for v in node:
            yield from _uris(v)


def validate(document: dict) -> None:
    validator = jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
    bad = [u for u in _uris(document) if not URI_REFERENCE.match(u)]
    assert not bad, bad


def test_schema_file_is_the_official_one():
    assert SCHEMA["id"].endswith("/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json")
    jsonschema.Draft4Validator.check_schema(SCHEMA)


def test_sample_result_is_valid_sarif_with_rules_levels_and_locations():
    doc = json.loads(sarif.render(sample_result()))
    validate(doc)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert ids == sorted(ids) and {"DSA201", "DSA203", "DSA001", "DSA305"} <= set(ids)
    results = run["results"]
    assert len(results) == len(sample_result().findings)
    by_rule = {r["ruleId"]: r for r in results}
    assert rules[by_rule["DSA201"]["ruleIndex"]]["id"] == "DSA201"
    assert by_rule["DSA201"]["level"] == "error" and by_rule["DSA101"]["level"] == "warning"
    assert by_rule["DSA204"]["level"] == "note"  # info
    # absolute root: paths are relative to a DATASETROOT base given in originalUriBaseIds
    loc = by_rule["DSA201"]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": "train/cat/c1.png", "uriBaseId": "DATASETROOT"}
    assert run["originalUriBaseIds"]["DATASETROOT"]["uri"] == "file:///data/pets/"
    assert len(by_rule["DSA201"]["relatedLocations"]) == 2
    # the hostile name is percent-encoded in the URI, never raw markup
    uris = [rl["physicalLocation"]["artifactLocation"]["uri"] for rl in by_rule["DSA201"]["relatedLocations"]]
    assert all("<" not in u and '"' not in u for u in uris)
    assert XSS_PATH not in uris
    # stable identity for code-scanning pages, and the baselined finding is suppressed
    assert by_rule["DSA201"]["partialFingerprints"][sarif.FINGERPRINT_KEY] == sample_result().findings[0].fingerprint
    baselined = by_rule["DSA301"]
    assert baselined["suppressions"][0]["kind"] == "external" and baselined["baselineState"] == "unchanged"
    # a pathless finding is located at the dataset root
    assert by_rule["DSA101"]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "./"
    # the crashed check makes the invocation unsuccessful, as it fails the gate
    inv = run["invocations"][0]
    assert inv["executionSuccessful"] is False and inv["exitCode"] == 1
    assert inv["toolExecutionNotifications"][0]["descriptor"]["id"] == "DSA305"


def test_relative_root_prefixes_paths_for_the_repository_checkout():
    result = sample_result()
    result.root = "data/pets"
    doc = sarif.to_document(result)
    validate(doc)
    loc = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": "data/pets/train/cat/c1.png", "uriBaseId": "%SRCROOT%"}
    assert "originalUriBaseIds" not in doc["runs"][0]


def test_a_broken_schema_document_is_caught():
    """The validation is real: a result without a message, or a wrong level, fails it."""
    doc = sarif.to_document(sample_result())
    doc["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(AssertionError):
        validate(doc)


@pytest.mark.parametrize("name", ["we ird%20#?.png", "caf\u00e9.png", "bad\udcffbyte.png"])
def test_odd_names_make_valid_uris(name):
    result = sample_result()
    from dataclasses import replace

    from dsaudit.index.layout import display_path

    shown = display_path(name) if "\udcff" in name else name
    result.findings = [replace(result.findings[2], paths=(f"train/cat/{shown}",))]
    doc = sarif.to_document(result)
    validate(doc)
    uri = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert " " not in uri and "#" not in uri and "?" not in uri


def test_cli_writes_valid_sarif_for_a_real_scan(tmp_path):
    root = tmp_path / "data"
    make_split_dataset(root, {"train": {"cat": 4, "dog": 4}, "val": {"cat": 2, "dog": 2}}, size=32)
    patches = real_patches(1, size=32, seed=9)
    write_image(root / "train" / "cat" / "leak.png", patches[0])
    write_image(root / "val" / "cat" / "leak.png", patches[0])
    (root / "train" / "dog" / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["scan", str(root), "-o", str(out), "-f", "sarif", "-j", "1", "--no-probe"],
                             catch_exceptions=False)
    assert res.exit_code == 1, res.output
    doc = json.loads((out / "report.sarif").read_text(encoding="utf-8"))
    validate(doc)
    results = doc["runs"][0]["results"]
    rule_ids = {r["ruleId"] for r in results}
    assert {"DSA201", "DSA003"} <= rule_ids  # the leaked copy and the empty file
    leak = next(r for r in results if r["ruleId"] == "DSA201")
    uris = {leak["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]} | {
        rl["physicalLocation"]["artifactLocation"]["uri"] for rl in leak.get("relatedLocations", [])}
    assert any(u.endswith("train/cat/leak.png") for u in uris) and any(u.endswith("val/cat/leak.png") for u in uris)
