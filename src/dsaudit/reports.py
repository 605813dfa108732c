"""The report formats and their writer, shared by the command line and the Python API.

Each format names its file and its renderer module in ``dsaudit.render``; a renderer is imported
only when its format is asked for (the HTML one needs Jinja2, none is needed for a JSON-only run).
Files are written atomically and never over a FIFO, socket, device or read-only file (safe_write).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from dsaudit.findings import ScanResult
from dsaudit.safe_write import write_atomically

# format -> (file name, renderer module in dsaudit.render)
REPORTS = {"json": ("report.json", "json"), "html": ("report.html", "html"),
           "junit": ("report.junit.xml", "junit"), "md": ("report.md", "markdown"),
           "sarif": ("report.sarif", "sarif")}
FORMATS = tuple(REPORTS)


def render_report(result: ScanResult, fmt: str) -> str:
    """The report of `result` in format `fmt` (one of FORMATS) as text."""
    return importlib.import_module(f"dsaudit.render.{REPORTS[fmt][1]}").render(result)


def write_reports(result: ScanResult, out: Path, formats: list[str]) -> list[Path]:
    """Write `result` into the folder `out` (created) in each of `formats`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out / REPORTS[fmt][0]
        write_atomically(path, render_report(result, fmt))
        written.append(path)
    return written
