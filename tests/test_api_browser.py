"""Report._repr_html_ in a real headless Chromium, as a notebook would show it: the report renders
inside its sandboxed frame, its script runs under the report's own CSP, hostile names stay text,
nothing is fetched, and the frame cannot reach the page around it."""

from __future__ import annotations

import pytest

from dsaudit.api import Report
from test_browser import _artifact_dir, _open, browser  # noqa: F401  (the fixture)
from test_render_html import XSS_FILE, sample_result

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOST = """<!doctype html><html><head><meta charset="utf-8"><title>notebook</title></head>
<body><div id="cell">{output}</div><script>window.notebookSecret = "kernel-token";</script></body></html>"""


def test_repr_html_renders_sandboxed_in_chromium(browser, tmp_path):  # noqa: F811
    report = Report(sample_result())
    host = tmp_path / "notebook.html"
    host.write_text(HOST.format(output=report._repr_html_()), encoding="utf-8")
    context, page, events = _open(browser, host.as_uri())
    try:
        frame_el = page.locator("iframe.dsaudit-report")
        assert frame_el.count() == 1 and frame_el.is_visible()
        frame = frame_el.element_handle().content_frame()
        frame.wait_for_selector("#verdict")
        assert "Gate failed" in frame.locator("#verdict").inner_text()
        # the report's script ran inside the frame (the filter controls need it) ...
        assert frame.locator("#finding-controls").is_visible()
        assert frame.locator("#f-count").inner_text() == "showing 6 of 6"
        frame.uncheck("input[name=sev][value=error]")
        assert frame.locator("#f-count").inner_text() == "showing 3 of 6"
        # ... under the report's CSP, with hostile names as text and no request but the host page
        assert XSS_FILE in frame.inner_text("body")
        assert events["dialogs"] == [] and events["pageerrors"] == []
        assert [c for c in events["console"] if c[0] == "error"] == []
        assert [u for u in events["requests"] if u != host.as_uri() and not u.startswith(("data:", "about:"))] == []
        assert frame.evaluate("typeof window.__xss") == "undefined"
        # the frame has an opaque origin: it cannot read the notebook page or its secrets
        reach = frame.evaluate("(() => { try { return String(window.parent.notebookSecret); } "
                               "catch (e) { return 'blocked'; } })()")
        assert reach == "blocked"
        cookies = "(() => { try { return document.cookie, 'cookies'; } catch (e) { return 'blocked'; } })()"
        assert frame.evaluate(cookies) == "blocked"
        page.screenshot(path=str(_artifact_dir(tmp_path) / "notebook-repr-html.png"), full_page=False)
    finally:
        context.close()
