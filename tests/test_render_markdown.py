"""Markdown summary for PR comments / CI step summaries: short, verdict first, inert names."""

from __future__ import annotations

from dsaudit.findings import Finding, Severity
from dsaudit.render import markdown
from test_render_html import sample_result


def test_verdict_counts_and_findings_table():
    text = markdown.render(sample_result())
    lines = text.splitlines()
    assert lines[0].startswith("### ") and "gate failed" in lines[0] and "fail-on error" in lines[0]
    assert "**3 errors**" in text and "**1 warning**" in text and "1 baselined" in text
    assert "1 check error" in text and "DSA305" in text
    table = [line for line in lines if line.startswith("| ") and "error |" in line]
    assert len(table) == 3 and "DSA001" in table[0]
    # baselined findings are not in the top table but are counted per check
    assert not any("Last batch of one" in line for line in lines)
    assert "| DSA301 | batch.last-batch | 0 | 0 | 0 | 1 |" in text
    assert "train (55), val (33), test (16)" in text


def test_passed_verdict():
    assert "gate passed" in markdown.render(sample_result(passed=True)).splitlines()[0]


def test_hostile_names_are_inert():
    text = markdown.render(sample_result())
    assert "<img" not in text and "<script>" not in text
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;.png" not in text  # parentheses left alone
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in text
    result = sample_result()
    result.findings.insert(0, Finding("DSA001", Severity.ERROR, "pipe | and\nnewline *bold* [x](y)",
                                      "m", paths=("a|b`c`.png",)))
    row = next(line for line in markdown.render(result).splitlines() if "pipe" in line)
    assert row.count(" | ") == 3 + 0 and "\\|" in row and "\\*bold\\*" in row and "\\[x\\]" in row
    assert "a\\|b\\`c\\`.png" in row


def test_long_lists_are_capped():
    result = sample_result(n_extra_findings=500)
    result.gate["counts"]["info"] = 501
    text = markdown.render(result, max_findings=10)
    assert "more findings" in text and len(text) < 65_536
    assert sum(1 for line in text.splitlines() if line.startswith("| ") and "info |" in line) <= 10


def test_bidi_and_zero_width_characters_are_shown_not_obeyed():
    result = sample_result()
    result.findings.insert(0, Finding("DSA001", Severity.ERROR, "Cannot decode spoof\u202egnp.exe", "m",
                                      paths=("train/cat/zero\u200bwidth\ufeff\u2067.png",)))
    text = markdown.render(result)
    assert not any(c in text for c in "\u202e\u200b\ufeff\u2067"), ascii(text)
    row = next(line for line in text.splitlines() if "spoof" in line)
    # the backslash is escaped too, so GitHub shows the escape as text
    assert "spoof\\\\u202egnp.exe" in row and "zero\\\\u200bwidth\\\\ufeff\\\\u2067.png" in row


def test_layout_reading_and_notes_are_listed():
    result = sample_result()
    result.layout["reading"] = ["splits by folder name: 'Training' is train, 'Testing' is test"]
    result.meta["notes"] = ["--validation-steps: no validation split; applied to test"]
    lines = markdown.render(result).splitlines()
    assert "- Layout read as: splits by folder name: 'Training' is train, 'Testing' is test" in lines
    assert "- Note: --validation-steps: no validation split; applied to test" in lines
    result.meta["notes"] = [f"note {i}" for i in range(30)]
    text = markdown.render(result)
    assert "- Note: note 10" in text and "- Note: note 11" not in text and "\u2026 and 19 more" in text
    plain = markdown.render(sample_result())   # nothing to say: no list
    assert "Layout read as" not in plain and "- Note:" not in plain
