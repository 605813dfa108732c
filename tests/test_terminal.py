"""The terminal shows what matters: a roll-up of every check with findings, the probe verdict once in
one line at its severity, and findings capped per check (never one global cap)."""

from __future__ import annotations

import dataclasses
import io
import re

from rich.console import Console

from dsaudit.config import AuditConfig, LeakageConfig, ProbeConfig
from dsaudit.findings import Finding, Severity
from dsaudit.pipeline import scan
from dsaudit.render import terminal
from imagery import real_patches, write_image


def _text(result, verbose=False) -> str:
    buf = io.StringIO()
    terminal.render(result, Console(file=buf, width=200, highlight=False, color_system=None), verbose=verbose)
    return buf.getvalue()


def _noisy_dataset(root):
    """Many findings of many checks: 30 copies between the splits (DSA201), patients on both sides
    (DSA205), a broken file (DSA002), an empty one (DSA003), a class missing from val (DSA011)."""
    patches = iter(real_patches(120, 32, seed=5, stride=16))
    for label in ("cat", "dog"):
        for i in range(30):
            write_image(root / "train" / label / f"p{i}_{label}.png", next(patches))
    for i in range(30):
        label = ("cat", "dog")[i % 2]
        (root / "val" / label).mkdir(parents=True, exist_ok=True)
        (root / "val" / label / f"p{i}_copy.png").write_bytes(
            (root / "train" / label / f"p{i}_{label}.png").read_bytes())
    write_image(root / "train" / "bird" / "b.png", next(patches))
    jpg = write_image(root / "train" / "cat" / "broken.jpg", next(patches))
    jpg.write_bytes(jpg.read_bytes()[:300])
    (root / "train" / "dog" / "empty.png").write_bytes(b"")


def test_a_scan_with_many_findings_shows_every_failing_check_in_the_terminal(tmp_path):
    _noisy_dataset(tmp_path / "ds")
    result = scan(tmp_path / "ds", AuditConfig(cache=False, jobs=1, probe=ProbeConfig(mode="off"),
                                               leakage=LeakageConfig(group_regex=r"(p\d+)_")))
    ids = {f.check_id for f in result.findings}
    assert {"DSA201", "DSA205", "DSA002", "DSA003", "DSA011"} <= ids
    assert sum(f.check_id == "DSA201" for f in result.findings) > terminal.MAX_PER_CHECK
    text = _text(result)
    rollup = text[text.index("Checks with findings"):text.index("ERROR (")]
    for check_id in ids:  # every check with findings, failing or not, is in the roll-up by ID and name
        assert check_id in rollup
        name = next(f.check_name for f in result.findings if f.check_id == check_id)
        assert name in rollup
    # worst first: every error-level check comes before every warning-level one
    order = [m.group() for m in re.finditer(r"DSA\d{3}", rollup)]
    worst = {c: max(f.severity for f in result.findings if f.check_id == c) for c in ids}
    assert [worst[c] for c in order] == sorted((worst[c] for c in order), reverse=True)
    # the list is capped per check: each failing check still shows its own lines
    listed = text[text.index("ERROR ("):]
    for check_id in (c for c in ids if worst[c] == Severity.ERROR):
        assert f"  {check_id} " in listed
    n201 = sum(f.check_id == "DSA201" for f in result.findings)
    assert listed.count("  DSA201 ") == terminal.MAX_PER_CHECK
    assert f"... {n201 - terminal.MAX_PER_CHECK} more DSA201" in listed
    assert _text(result, verbose=True).count("  DSA201 ") == n201


def _probe_finding(check_id, severity, value, lo, hi, p, title):
    return Finding(check_id, severity, title, "long message", subject="probe:x", check_name="probe.x",
                   evidence={"inflation": value, "interval": [lo, hi], "p_value": p, "n_leaked": 71})


def test_the_probe_verdict_is_one_line_at_its_real_severity(tmp_path):
    _noisy_dataset(tmp_path / "ds")
    result = scan(tmp_path / "ds", AuditConfig(cache=False, jobs=1, select=("DSA201",),
                                               probe=ProbeConfig(mode="off")))
    noisy = [dataclasses.replace(f, severity=Severity.ERROR) for f in result.findings] * 4
    probe = [_probe_finding("DSA904", Severity.ERROR, 0.103, 0.04, 0.16, 0.001,
                            "Group leakage inflates the probe's validation accuracy by +10.3 points"),
             _probe_finding("DSA901", Severity.INFO, 0.0, -0.05, 0.05, 1.0,
                            "No significant inflation from duplicates across splits (+0.0 points)")]
    text = _text(dataclasses.replace(result, findings=probe + noisy))
    lines = [line for line in text.splitlines() if "Probe verdict" in line]
    assert lines[0].startswith("Probe verdict (error): Group leakage inflates")
    assert "+10.3 points (95% interval +4.0 to +16.0, p = 0.001, 71 leaked images) [DSA904]" in lines[0]
    assert lines[1].startswith("Probe verdict (info): No significant inflation")
    assert text.count("+10.3 points") == 2  # the title's number and the verdict line's: stated once
    assert "DSA904" in text[text.index("Checks with findings"):]


def test_split_shift_and_interval_widths_are_stated_in_the_terminal_even_when_clean(tmp_path):
    from imagery import make_split_dataset

    make_split_dataset(tmp_path, {"train": {"a": 20, "b": 20}, "val": {"a": 5, "b": 5},
                                  "test": {"a": 36, "b": 4}}, size=16)
    result = scan(tmp_path, AuditConfig(cache=False, jobs=1, select=("DSA102", "DSA103"),
                                        probe=ProbeConfig(mode="off")))
    text = _text(result)
    assert "split shift: val: no shift in label proportions found against train (TVD 0.000, p = 1; label " \
           "proportions only, not image content)" in text
    assert "split shift: test: label proportions differ from train" in text
    assert "accuracy interval: val: an accuracy on its 10 images is good to +/-31.0 points (95%), wider than " \
           "the +/-5.0 bound; about 385 images reach it" in text
    [shift] = [f for f in result.findings if f.check_id == "DSA102"]
    assert "label proportions only" in shift.message
