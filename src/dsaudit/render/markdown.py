"""A short Markdown summary for a pull-request comment or a CI step summary ($GITHUB_STEP_SUMMARY).

Verdict first, then counts, the dataset in one line, the most severe findings in a table, and
per-check counts in a collapsed block. Every untrusted text (file and class names, messages) is
escaped so that it can neither break the table nor inject HTML/Markdown (GitHub renders HTML in
Markdown). The output stays well under GitHub's 65,536-character comment limit.

Reads a :class:`~dsaudit.findings.ScanResult` and nothing else of dsaudit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from dsaudit.findings import Finding, ScanResult
from dsaudit.render.text import clean

MAX_FINDINGS = 15
MAX_SAID = 12   # layout readings and notes listed
MAX_CHARS = 60_000
ICON = {"error": "\u274c", "warning": "\u26a0\ufe0f", "info": "\u2139\ufe0f"}  # ❌ ⚠️ ℹ️

_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def escape(text: Any, limit: int = 200) -> str:
    """Untrusted text as inert inline Markdown: one line, HTML entities, punctuation escaped, bidi
    controls and zero-width characters shown as \\uXXXX."""
    text = clean(str(text).replace("\r", " ").replace("\n", " ").replace("\t", " "))
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", text)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 or word == "info" else "s")


def _where(f: Finding) -> str:
    if f.paths:
        more = f" (+{len(f.paths) - 2:,} more)" if len(f.paths) > 2 else ""
        return ", ".join(escape(p, 90) for p in f.paths[:2]) + more
    return escape(f.subject, 90)


def render(result: ScanResult, *, max_findings: int = MAX_FINDINGS, report_name: str = "report.html",
           json_name: str = "report.json") -> str:
    """The Markdown summary as a string."""
    gate = result.gate or {}
    counts: Mapping[str, int] = gate.get("counts") or result.counts_by_severity()
    fail_on = str(gate.get("fail_on", "error"))
    passed = gate.get("passed")
    if passed is None:
        head = "### dsaudit: no verdict recorded"
    elif passed:
        head = f"### \u2705 dsaudit: gate passed (fail-on {escape(fail_on)})"
    else:
        head = f"### \u274c dsaudit: gate failed (fail-on {escape(fail_on)})"
    lines = [head, ""]

    tally = " \u00b7 ".join(f"{ICON[s]} **{_plural(int(counts.get(s, 0)), s)}**"
                             for s in ("error", "warning", "info"))
    extras = []
    baselined = gate.get("baselined", sum(1 for f in result.findings if f.baselined))
    if baselined:
        extras.append(f"{baselined:,} baselined")
    check_errors = gate.get("check_errors", len(result.check_errors))
    if check_errors:
        extras.append(f"\u26a0\ufe0f {_plural(int(check_errors), 'check error')}")
    lines.append(tally + (" \u00b7 " + " \u00b7 ".join(extras) if extras else ""))
    lines.append("")

    summary = result.summary or {}
    split_counts = summary.get("counts") if isinstance(summary.get("counts"), Mapping) else {}
    splits = [s for s in split_counts if s != "all"]
    classes = {c for v in split_counts.values() if isinstance(v, Mapping) for c in v}
    dataset = f"Dataset {escape(result.root, 120)}: {int(summary.get('images') or 0):,} images"
    if splits:
        dataset += " in " + ", ".join(
            f"{escape(s, 40)} ({sum(split_counts[s].values()):,})" for s in splits)
    dataset += f", {len(classes):,} classes"
    if summary.get("unreadable"):
        dataset += f", {int(summary['unreadable']):,} unreadable"
    if isinstance(summary.get("duration_seconds"), (int, float)):
        dataset += f"; scanned in {summary['duration_seconds']:.1f} s"
    lines += [dataset + ".", ""]
    # how the layout was read (a guess is a DSA017 warning too) and the notes on options that did
    # not apply: a reviewer of a PR comment sees them as the terminal and the HTML report show them
    said = [f"- Layout read as: {escape(line, 300)}" for line in (result.layout or {}).get("reading") or []]
    said += [f"- Note: {escape(note, 300)}" for note in (result.meta or {}).get("notes") or []]
    if len(said) > MAX_SAID:
        said = said[:MAX_SAID] + [f"- \u2026 and {len(said) - MAX_SAID:,} more"]
    if said:
        lines += said + [""]

    active = sorted((f for f in result.findings if not f.baselined),
                    key=lambda f: (-int(f.severity), f.check_id, f.key))
    if active:
        lines += ["| | Check | Finding | Where |", "|---|---|---|---|"]
        for f in active[:max_findings]:
            name = f" {escape(f.check_name, 60)}" if f.check_name else ""
            lines.append(f"| {ICON.get(str(f.severity), '')} {f.severity} | {escape(f.check_id, 12)}{name} "
                         f"| {escape(f.title, 160)} | {_where(f)} |")
        if len(active) > max_findings:
            lines.append("")
            rest = len(active) - max_findings
            lines.append(f"\u2026 and {rest:,} more finding{'' if rest == 1 else 's'}.")
        lines.append("")
    else:
        lines += ["No findings.", ""]

    if result.check_errors:
        lines.append("**Checks that crashed:** " + "; ".join(
            f"{escape(e.check_id, 12)} ({escape(e.error, 120)})" for e in result.check_errors[:10]))
        lines.append("")

    per_check: dict[str, dict[str, int]] = {}
    for f in result.findings:
        row = per_check.setdefault(f.check_id, {"name": f.check_name, "error": 0, "warning": 0,
                                                "info": 0, "baselined": 0})
        row["baselined" if f.baselined else str(f.severity)] += 1
    if per_check:
        lines += ["<details><summary>Findings per check</summary>", "",
                  "| Check | Name | Errors | Warnings | Info | Baselined |", "|---|---|--:|--:|--:|--:|"]
        for cid in sorted(per_check):
            r = per_check[cid]
            lines.append(f"| {escape(cid, 12)} | {escape(r['name'], 60)} | {r['error']:,} | {r['warning']:,} "
                         f"| {r['info']:,} | {r['baselined']:,} |")
        lines += ["", "</details>", ""]

    lines.append(f"Full report: {escape(report_name)} (all findings: {escape(json_name)}).")
    text = "\n".join(lines) + "\n"
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS].rsplit("\n", 1)[0] + "\n\n\u2026 (truncated; see the full report)\n"
    return text


def write(result: ScanResult, path: str | Path, **options: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(result, **options), encoding="utf-8")
    return path


__all__ = ["render", "write", "escape"]
