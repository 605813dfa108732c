"""The terminal summary: how the layout was read, counts per split and class, a roll-up of every
check with findings (never capped), the probe's verdict in one line, then the findings by severity,
capped per check (so one noisy check never hides another), then the gate."""

from __future__ import annotations

import re
from typing import Mapping

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dsaudit.findings import Finding, ScanResult, Severity
from dsaudit.render.text import INVISIBLE

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
MAX_PER_CHECK = 5   # findings listed per check (and severity) unless --verbose; the roll-up counts them all
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


def is_probe_verdict(f: Finding) -> bool:
    """A probe's measured verdict: the finding carries the inflation and its interval (read from the
    evidence, not from a check ID, so the renderer only reads findings)."""
    ev = f.evidence if isinstance(f.evidence, Mapping) else {}
    return ev.get("inflation") is not None and isinstance(ev.get("interval"), (list, tuple))


def probe_line(f: Finding) -> str:
    """The verdict in one line: what, the number, the interval and the p-value."""
    ev = f.evidence
    lo, hi = ev["interval"]
    p = ev.get("p_value")
    n = ev.get("n_leaked")
    return (f"{f.title}: {100 * ev['inflation']:+.1f} points (95% interval {100 * lo:+.1f} to {100 * hi:+.1f}"
            + (f", p = {p:.2g}" if isinstance(p, (int, float)) else "")
            + (f", {n} leaked images" if n else "") + f") [{f.check_id}]")


def _by_check(findings: list[Finding]) -> list[tuple[str, list[Finding]]]:
    groups: dict[str, list[Finding]] = {}
    for f in findings:
        groups.setdefault(f.check_id, []).append(f)
    return list(groups.items())


def _rollup(findings: list[Finding], console: Console) -> None:
    """Every check with findings, in one table: ID, name, count, worst severity, worst first. Nothing
    here is capped, so an error-level check is never hidden behind a long list of another's."""
    if not findings:
        return
    rows = []
    for check_id, of_check in _by_check(findings):
        worst = max(f.severity for f in of_check)
        rows.append((-int(worst), check_id, of_check[0].check_name, len(of_check), worst))
    table = Table(title=f"Checks with findings ({len(rows)})", show_lines=False)
    for col, justify in (("check", "left"), ("name", "left"), ("findings", "right"), ("worst", "left")):
        table.add_column(col, justify=justify)
    for _, check_id, name, count, worst in sorted(rows):
        table.add_row(f"[{STYLE[worst]}]{_safe(check_id)}[/{STYLE[worst]}]", _safe(name), str(count),
                      f"[{STYLE[worst]}]{worst}[/{STYLE[worst]}]")
    console.print(table)


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
    active = [f for f in result.findings if not f.baselined]
    _rollup(active, console)
    verdicts = [f for f in active if is_probe_verdict(f)]
    for f in sorted(verdicts, key=lambda f: -int(f.severity)):
        console.print(f"\n[{STYLE[f.severity]}]Probe verdict ({f.severity}):[/{STYLE[f.severity]}] "
                      f"{_safe(probe_line(f))}")
    statements = (result.sections or {}).get("statements") or []
    if statements:
        console.print("")
    for st in statements:
        if isinstance(st, Mapping):
            console.print(f"{_safe(st.get('topic', ''))}: {_safe(st.get('text', ''))}")
    listed = [f for f in active if not is_probe_verdict(f)]
    for severity in sorted(Severity, reverse=True):
        group = [f for f in listed if f.severity == severity]
        if not group:
            continue
        console.print(f"\n[{STYLE[severity]}]{str(severity).upper()} ({len(group)})[/{STYLE[severity]}]")
        for check_id, of_check in _by_check(group):
            limit = len(of_check) if verbose else MAX_PER_CHECK
            for f in of_check[:limit]:
                console.print(f"  [{STYLE[severity]}]{f.check_id}[/{STYLE[severity]}] {_safe(f.title)}")
                snippet = f.evidence.get("snippet") if isinstance(f.evidence, Mapping) else None
                if isinstance(snippet, str):  # code to paste (class weights): printed whole, as text
                    for line in snippet.splitlines():
                        console.print(f"      {printable(line)}", markup=False, highlight=False, soft_wrap=True)
            if len(of_check) > limit:
                console.print(f"  ... {len(of_check) - limit} more {check_id} (see report.json, or --verbose)")
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
