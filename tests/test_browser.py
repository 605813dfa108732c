"""The HTML report in a real headless Chromium: no console errors, no network, escaped names as text,
sorting/filtering work, the page is complete without JavaScript. Saves screenshots to
test-artifacts/ (gitignored) and prints their paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsaudit.render import html as html_render
from test_render_html import XSS_CLASS, XSS_FILE, XSS_PATH, sample_result

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        except Exception as exc:  # pragma: no cover - environment problem, not a report problem
            pytest.skip(f"Chromium does not start: {exc}")
        yield chromium
        chromium.close()


def _artifact_dir(tmp_path: Path) -> Path:
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        return ARTIFACTS if os.access(ARTIFACTS, os.W_OK) else tmp_path
    except OSError:
        return tmp_path


def _open(browser, url: str, *, javascript: bool = True, width: int = 1366):
    context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=javascript)
    page = context.new_page()
    events = {"console": [], "requests": [], "dialogs": [], "pageerrors": []}
    page.on("console", lambda m: events["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: events["pageerrors"].append(str(e)))
    page.on("request", lambda r: events["requests"].append(r.url))
    page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
    page.goto(url, wait_until="load")
    return context, page, events


def test_report_in_headless_chromium(browser, tmp_path):
    report = html_render.write(sample_result(), tmp_path / "report.html")
    url = report.as_uri()
    context, page, events = _open(browser, url)
    try:
        # No errors, no dialogs (the XSS payload would call alert), no requests but the file itself.
        assert [c for c in events["console"] if c[0] in ("error", "warning")] == []
        assert events["pageerrors"] == [] and events["dialogs"] == []
        assert [u for u in events["requests"] if u != url and not u.startswith("data:")] == []
        assert page.evaluate("typeof window.__xss") == "undefined"

        # The verdict comes first and says what happened.
        verdict = page.locator("#verdict")
        assert verdict.is_visible() and "Gate failed" in verdict.inner_text()
        top = page.evaluate("document.querySelector('#verdict').getBoundingClientRect().top")
        assert top == 0

        # The gallery renders decoded thumbnails side by side; conflicts are flagged in text.
        images = page.locator("#gallery img.thumb")
        assert images.count() == 9
        widths = page.evaluate("Array.from(document.querySelectorAll('#gallery img.thumb'))"
                               ".map(i => i.complete && i.naturalWidth)")
        assert all(w and w > 0 for w in widths), widths
        assert page.locator("#gallery .pair.conflict").count() == 2
        assert "Conflicting labels" in page.locator("#gallery").inner_text()

        # Hostile names are text: no element was created from them.
        body_text = page.inner_text("body")
        assert XSS_FILE in body_text and XSS_PATH in body_text and XSS_CLASS in body_text
        assert page.evaluate("document.querySelectorAll('img:not([src^=\"data:image/\"])').length") == 0
        assert page.evaluate("document.scripts.length") == 1

        # Filtering and sorting (vanilla JS).
        assert page.locator("#finding-controls").is_visible()
        assert page.locator("#f-count").inner_text() == "showing 6 of 6"
        page.uncheck("input[name=sev][value=error]")
        assert page.locator("#f-count").inner_text() == "showing 3 of 6"
        assert page.locator("article.finding.sev-error:visible").count() == 0
        page.check("input[name=sev][value=error]")
        page.select_option("#f-check", "DSA201")
        assert page.locator("article.finding:visible").count() == 1
        page.select_option("#f-check", "")
        page.fill("#f-text", "onerror")
        assert page.locator("article.finding:visible").count() == 2  # the DSA201 and DSA001 cards
        page.fill("#f-text", "")
        page.select_option("#f-sort", "path")
        paths = page.evaluate("Array.from(document.querySelectorAll('#findings-list article'))"
                              ".map(a => a.dataset.path)")
        assert paths == sorted(paths)

        page.select_option("#f-sort", "severity")
        page.evaluate("window.scrollTo(0, 0)")
        out = _artifact_dir(tmp_path)
        shot = out / "report-full.png"
        page.screenshot(path=str(shot), full_page=True)
        page.screenshot(path=str(out / "report-top.png"))
        page.emulate_media(media="print")
        pdf_ok = page.evaluate("getComputedStyle(document.querySelector('.toc')).display") == "none"
        assert pdf_ok
        print(f"\nscreenshot: {shot}")
        assert shot.stat().st_size > 10_000
    finally:
        context.close()


def test_report_without_javascript_shows_everything(browser, tmp_path):
    report = html_render.write(sample_result(passed=True), tmp_path / "report.html")
    context, page, events = _open(browser, report.as_uri(), javascript=False, width=800)
    try:
        assert events["pageerrors"] == [] and events["dialogs"] == []
        assert "Gate passed" in page.locator("#verdict").inner_text()
        assert page.locator("article.finding:visible").count() == 6
        assert not page.locator("#finding-controls").is_visible()  # controls need the script
        assert page.locator("#gallery img.thumb").count() == 9
        page.screenshot(path=str(_artifact_dir(tmp_path) / "report-nojs-narrow.png"), full_page=False)
    finally:
        context.close()


def test_huge_report_opens_without_errors(browser, tmp_path):
    from test_render_html import _huge_result

    report = html_render.write(_huge_result(), tmp_path / "report.html")
    context, page, events = _open(browser, report.as_uri())
    try:
        seconds = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd / 1000")
        print(f"\nhuge report: {report.stat().st_size / 1e6:.2f} MB, load event after {seconds:.2f} s")
        assert [c for c in events["console"] if c[0] == "error"] == [] and events["pageerrors"] == []
        assert [u for u in events["requests"] if u != report.as_uri() and not u.startswith("data:")] == []
        assert page.locator("#f-count").inner_text() == "showing 1000 of 1000"
        assert page.locator("#gallery img.thumb").count() > 0
    finally:
        context.close()


def test_demo_dataset_report_in_chromium(browser, tmp_path):
    """The real pipeline on the built-in demo dataset (real images, planted flaws) renders cleanly."""
    from dsaudit.config import AuditConfig, BatchConfig, LeakageConfig, ProbeConfig
    from dsaudit.demo import DEMO_GROUP_REGEX, build_demo_dataset
    from dsaudit.pipeline import scan

    root = build_demo_dataset(tmp_path / "digits")
    config = AuditConfig(batch=BatchConfig(batch_size=32), probe=ProbeConfig(mode="off"),
                         leakage=LeakageConfig(group_regex=DEMO_GROUP_REGEX))
    result = scan(root, config, thumbnails=True, command="dsaudit demo")
    report = html_render.write(result, tmp_path / "report.html")
    context, page, events = _open(browser, report.as_uri())
    try:
        assert [c for c in events["console"] if c[0] in ("error", "warning")] == []
        assert events["pageerrors"] == [] and events["dialogs"] == []
        assert [u for u in events["requests"] if u != report.as_uri() and not u.startswith("data:")] == []
        assert "Gate failed" in page.locator("#verdict").inner_text()
        assert page.locator("article.finding").count() == min(len(result.findings), html_render.MAX_FINDINGS)
        # images far down the page load as they are scrolled to (loading=lazy): scroll to each
        page.evaluate("""async () => { for (const i of Array.from(document.images)) {
            if (i.offsetParent !== null) { i.scrollIntoView(); await i.decode().catch(() => null); } } }""")
        broken = page.evaluate("Array.from(document.images).filter(i => i.offsetParent !== null && "
                               "!(i.complete && i.naturalWidth)).length")
        assert broken == 0 and page.locator("img.thumb").count() > 0
        shot = _artifact_dir(tmp_path) / "demo-report.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshot: {shot}")
    finally:
        context.close()


def test_hostile_names_from_a_real_scan_stay_text(browser, tmp_path):
    """Real files named like markup, scanned by the real pipeline, shown as text in Chromium."""
    import shutil

    from dsaudit.config import AuditConfig
    from dsaudit.pipeline import scan
    from imagery import make_split_dataset

    root = tmp_path / "data"
    made = make_split_dataset(root, {"train": {"<script>": 6, "cat": 6}, "val": {"<script>": 3, "cat": 3}},
                              size=32)
    hostile = root / "val" / "<script>" / XSS_FILE
    shutil.copyfile(made["train"]["<script>"][0], hostile)  # a cross-split duplicate with a hostile name
    (root / "train" / "cat" / '"><svg onload=alert(2)>.jpg').write_bytes(b"")  # an empty, broken file
    result = scan(root, AuditConfig(), thumbnails=True, command="dsaudit scan data")
    assert any(XSS_FILE in p for f in result.findings for p in f.paths) or any(
        "svg onload" in p for f in result.findings for p in f.paths)
    report = html_render.write(result, tmp_path / "report.html")
    context, page, events = _open(browser, report.as_uri())
    try:
        assert events["dialogs"] == [] and events["pageerrors"] == []
        assert [c for c in events["console"] if c[0] == "error"] == []
        text = page.inner_text("body")
        assert '"><svg onload=alert(2)>.jpg' in text and "<script>" in text
        assert page.evaluate("document.querySelectorAll('svg[onload], img[onerror], script').length") == 1
    finally:
        context.close()


def _many_groups_result(groups: int = 520):
    """A report of `groups` cross-split duplicate groups (as CIFAR-10's 522), one or two pairs each,
    every image a real 32-px JPEG (a different one per path)."""
    from dsaudit.findings import Finding, ScanResult, Severity
    from imagery import real_patches
    from test_render_html import CHECK_DOCS, data_uri

    patches = real_patches(1200, size=32, seed=2, stride=8)
    findings, thumbs, k = [], {}, 0
    for i in range(groups):
        a = f"train/class_{i % 10}/{i:05d}.jpg"
        pairs = []
        for j in range(1 + i % 2):
            b = f"val/class_{i % 10}/{i:05d}_copy{j}.jpg"
            pairs.append({"a": a, "b": b, "split_a": "train", "split_b": "val", "label_a": f"class_{i % 10}",
                          "label_b": f"class_{i % 10}", "kind": "near", "distance": 4, "similarity": 0.95,
                          "transform": ("hflip", "crop/zoom+shift", "")[i % 3]})
        for p in [a] + [pr["b"] for pr in pairs]:
            thumbs[p] = data_uri(patches[k % len(patches)], size=32)
            k += 1
        findings.append(Finding("DSA202", Severity.ERROR, f"Near-duplicate group {i} across train and val",
                                "Copies across splits.", paths=tuple([a] + [pr["b"] for pr in pairs]),
                                evidence={"display": "pairs", "pairs": pairs}, check_name="leak.near-duplicate"))
    return ScanResult(root="/data/cifar", layout={"kind": "splits", "splits": ["train", "val"]},
                      summary={"files": 60000, "images": 60000}, findings=findings, check_errors=[], config={},
                      gate={"fail_on": "error", "passed": False, "exit_code": 1,
                            "counts": {"error": groups, "warning": 0, "info": 0}},
                      meta={"checks": CHECK_DOCS}, thumbnails=thumbs)


def test_a_report_with_500_duplicate_groups_opens_fast_and_every_group_shows_its_images(browser, tmp_path):
    result = _many_groups_result(520)
    report = html_render.write(result, tmp_path / "report.html")
    html = report.read_text(encoding="utf-8")
    assert "more in report.json" not in html and "left out" not in html  # nothing capped at this size
    context, page, events = _open(browser, report.as_uri())
    try:
        seconds = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd / 1000")
        print(f"\n520-group report: {report.stat().st_size / 1e6:.2f} MB, load event after {seconds:.2f} s")
        assert seconds < 2.0
        assert [c for c in events["console"] if c[0] in ("error", "warning")] == [] and events["pageerrors"] == []
        assert [u for u in events["requests"] if u != report.as_uri() and not u.startswith("data:")] == []
        pages = page.evaluate("document.querySelectorAll('#gallery .gitem').length")
        assert pages == 520 and page.locator("#gallery-pager").is_visible()
        assert page.locator("#gallery .gitem:visible").count() == html_render.GALLERY_PAGE
        checked = 0
        for n in range(-(-520 // html_render.GALLERY_PAGE)):
            page.evaluate(f"window.dsauditGalleryPage({n})")
            # every group on the page: all its images (2 per pair) decode to real pictures when shown
            counts = page.evaluate("""async () => {
                const groups = Array.from(document.querySelectorAll('#gallery .gitem')).filter(g => !g.hidden);
                const out = [];
                for (const g of groups) {
                    const imgs = Array.from(g.querySelectorAll('img.thumb'));
                    g.scrollIntoView();
                    await Promise.all(imgs.map(i => i.decode().catch(() => null)));
                    out.push([imgs.length, imgs.filter(i => i.complete && i.naturalWidth > 0).length,
                              g.querySelectorAll('.pair').length, g.querySelectorAll('.thumb.ph').length]);
                }
                return out;
            }""")
            for n_img, n_ok, n_pairs, n_placeholders in counts:
                assert n_pairs >= 1 and n_img == 2 * n_pairs == n_ok and n_placeholders == 0
            checked += len(counts)
        assert checked == 520
        # each finding card shows its own pairs side by side, with the transform in words
        card = page.locator("article.finding").first
        assert card.locator(".pair img.thumb").count() >= 2
        assert "The right image is the left one" in page.locator("#findings-list").text_content()
        # the card's link opens the gallery page that holds the group
        last = page.locator("article.finding").nth(519)
        last.locator("a", has_text="All pairs in the gallery").click()
        page.wait_for_function("document.getElementById(location.hash.slice(1)) && "
                               "!document.getElementById(location.hash.slice(1)).hidden")
    finally:
        context.close()
