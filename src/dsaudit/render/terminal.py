"""The terminal summary: counts per split and class, then findings grouped by severity, then the verdict."""

from __future__ import annotations

import re

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dsaudit.findings import ScanResult, Severity
from dsaudit.render.text import INVISIBLE

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
MAX_PER_SEVERITY = 15
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{INVISIBLE}]")  # C0, DEL and C1 controls, and render.text's invisibles


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object) -> str:
    """`text` with every control character (C0, DEL, C1) shown as a visible escape such as \\x1b,
    and every bidi control or zero-width character as one such as \\u202e.

    File and folder names come from the dataset, and a terminal obeys the escape sequences in
    them: colours, cursor moves, a cleared screen, a carriage return that overprints a line with a
    forged verdict. Bidi controls reorder what is shown (U+202E makes "cat\\u202egnp.exe" read
    "catexe.png") and zero-width characters make two different names look the same. Everything
    printed to the terminal that holds a name goes through here (the reports escape for their own
    formats); it also keeps a one-line message on one line."""
    return _UNSAFE.sub(_escape_char, str(text))


def _safe(text: object) -> str:
    """printable() and then safe inside rich markup ([bold] in a file name stays text)."""
    return escape(printable(text))


def render(result: ScanResult, console: Console, verbose: bool = False) -> None:
    counts = result.summary.get("counts", {})
    layout = result.layout.get("kind", "?")
    console.print(f"[bold]dsaudit[/bold] {_safe(result.dsaudit_version)}  root: {_safe(result.root)}  "
                  f"layout: {_safe(layout)}  files: {result.summary.get('files', 0)}  "
                  f"time: {result.summary.get('duration_seconds', 0):.1f}s")
    for line in result.layout.get("reading") or []:
        console.print(f"layout read as: {_safe(line)}")
    classes = sorted({c for per in counts.values() for c in per})
    if classes:
        table = Table(title="Images per split and class", show_lines=False)
        table.add_column("class")
        for split in counts:
            table.add_column(_safe(split), justify="right")
        for c in classes[:40]:
            table.add_row(_safe(c), *[str(counts[s].get(c, 0)) for s in counts])
        if len(classes) > 40:
            table.add_row(f"... {len(classes) - 40} more classes", *["" for _ in counts])
        table.add_row("[bold]total[/bold]", *[f"[bold]{sum(counts[s].values())}[/bold]" for s in counts])
        console.print(table)
    for severity in sorted(Severity, reverse=True):
        group = [f for f in result.findings if f.severity == severity and not f.baselined]
        if not group:
            continue
        console.print(f"\n[{STYLE[severity]}]{str(severity).upper()} ({len(group)})[/{STYLE[severity]}]")
        limit = len(group) if verbose else MAX_PER_SEVERITY
        for f in group[:limit]:
            console.print(f"  [{STYLE[severity]}]{f.check_id}[/{STYLE[severity]}] {_safe(f.title)}")
        if len(group) > limit:
            console.print(f"  ... {len(group) - limit} more (see report.json, or --verbose)")
    baselined = sum(1 for f in result.findings if f.baselined)
    if baselined:
        console.print(f"\n{baselined} finding(s) accepted by the baseline")
    for err in result.check_errors:
        console.print(f"\n[bold red]CHECK ERROR[/bold red] {err.check_id} {_safe(err.check_name)}: "
                      f"{_safe(err.error)}")
    gate = result.gate
    c = gate.get("counts", {})
    verdict = "[bold green]PASSED[/bold green]" if gate.get("passed") else "[bold red]FAILED[/bold red]"
    console.print(f"\nGate {verdict} (fail-on: {gate.get('fail_on')}): {c.get('error', 0)} error(s), "
                  f"{c.get('warning', 0)} warning(s), {c.get('info', 0)} info")
