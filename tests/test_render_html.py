"""The HTML report: self-contained, escaped, complete, capped. `sample_result` is shared with the
browser test (tests/test_browser.py) and the other renderer tests."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from dsaudit.findings import CheckError, Finding, ScanResult, Severity
from dsaudit.render import html as html_render
from imagery import real_patches

XSS_FILE = "<img src=x onerror=alert(1)>.png"
XSS_CLASS = "<script>"
XSS_PATH = f"val/{XSS_CLASS}/{XSS_FILE}"


def data_uri(array: np.ndarray, size: int = 96) -> str:
    """A real JPEG thumbnail as a data URI, as the pipeline makes them."""
    img = Image.fromarray(array).convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


CHECK_DOCS = {
    "DSA001": {"name": "integrity.unreadable", "summary": "An image that cannot be decoded.",
               "why": "A training loader crashes or silently skips it.",
               "fix": "Re-export or remove the file.", "severity": "error"},
    "DSA101": {"name": "balance.class-imbalance", "summary": "Classes of very different sizes.",
               "why": "Accuracy hides a minority class.", "fix": "Collect more or reweight.",
               "severity": "warning"},
    "DSA102": {"name": "balance.split-shift", "summary": "Class proportions differ between splits.",
               "why": "Not run in this scan.", "fix": "Stratify.", "severity": "warning"},
    "DSA201": {"name": "leak.cross-split-duplicate", "summary": "The same image in two splits.",
               "why": "Validation scores are inflated by memorised images.",
               "fix": "Keep each image in one split only.", "severity": "error"},
    "DSA203": {"name": "leak.conflicting-labels", "summary": "Duplicates with different labels.",
               "why": "One of the labels is wrong.", "fix": "Relabel or drop one copy.",
               "severity": "error"},
    "DSA204": {"name": "leak.duplicate-cluster", "summary": "Clusters of duplicates in a split.",
               "why": "The effective size is smaller.", "fix": "Deduplicate.", "severity": "info"},
    "DSA301": {"name": "batch.last-batch", "summary": "A last batch of one.",
               "why": "Batch norm breaks on one sample.", "fix": "Drop the remainder.",
               "severity": "warning"},
}


# The shape dsaudit's probe publishes (probe/analysis.py, probe/runner.py), trimmed.
PROBE_SECTION = {
    "mode": "auto", "status": "ran", "cross_split_pairs": 3, "leaked_by_pairs": 30, "leaked_by_groups": 0,
    "budget_seconds": 300.0, "elapsed_seconds": 41.2, "group_leakage": None,
    "leakage": {
        "status": "ran", "source": "pairs", "seed": 0, "classes": ["cat", "dog"],
        "runs": [{"name": "A", "with_partners": True, "epochs_done": 12, "leaked_accuracy": 0.97,
                  "clean_accuracy": 0.71},
                 {"name": "B", "with_partners": False, "epochs_done": 12, "leaked_accuracy": 0.62,
                  "clean_accuracy": 0.70}],
        "learnability": {"clean_n": 120, "clean_accuracy": 0.70, "interval": [0.61, 0.78], "chance": 0.5},
        "inflation": {"n": 30, "accuracy_with_partners": 0.97, "accuracy_without_partners": 0.62,
                      "inflation": 0.35, "interval": [0.18, 0.52], "p_value": 0.0004},
        "context": {"naive_gap": {"leaked": {"n": 30, "accuracy": 0.97, "interval": [0.83, 0.99]},
                                  "clean": {"n": 120, "accuracy": 0.71, "interval": [0.62, 0.78]},
                                  "gap": 0.26}},
    },
}


def sample_result(passed: bool = False, n_extra_findings: int = 0) -> ScanResult:
    """A hand-built scan result covering every part of the report, hostile names included."""
    patches = real_patches(10, size=48, seed=3)
    paths = ["train/cat/c1.png", "val/cat/c1_copy.png", "train/dog/d7.jpg", "val/cat/d7.jpg",
             XSS_PATH, "train/cat/c2.png", "train/cat/c2_aug.png", "train/cat/c2_aug2.png"]
    thumbs = {p: data_uri(patches[i]) for i, p in enumerate(paths)}
    thumbs["evil"] = "javascript:alert(1)"  # never embedded: not an image data URI
    findings = [
        Finding("DSA201", Severity.ERROR, "2 images appear in both train and val",
                "Validation contains copies of training images.", paths=tuple(paths[:2]) + (XSS_PATH,),
                evidence={"pairs": [
                    {"a": paths[0], "b": paths[1], "split_a": "train", "split_b": "val",
                     "label_a": "cat", "label_b": "cat", "kind": "bytes", "distance": 0,
                     "similarity": 1.0, "transform": None},
                    {"a": paths[5], "b": XSS_PATH, "split_a": "train", "split_b": "val",
                     "label_a": "cat", "label_b": XSS_CLASS, "kind": "near", "distance": 4,
                     "similarity": 0.962, "transform": "hflip"},
                ], "count": 2}, hint="Keep each image in one split only.",
                check_name="leak.cross-split-duplicate"),
        Finding("DSA203", Severity.ERROR, "Duplicate images carry different labels",
                "train/dog/d7.jpg and val/cat/d7.jpg are the same picture labelled dog and cat.",
                paths=(paths[2], paths[3]),
                evidence={"pairs": [{"a": paths[2], "b": paths[3], "split_a": "train", "split_b": "val",
                                     "label_a": "dog", "label_b": "cat", "kind": "pixels",
                                     "distance": 0, "similarity": 1.0, "transform": None}]},
                hint="Relabel or drop one copy.", check_name="leak.conflicting-labels"),
        Finding("DSA001", Severity.ERROR, "Unreadable image", f"{XSS_FILE} cannot be decoded.",
                paths=(XSS_PATH,), evidence={"error": "cannot identify image file <b>bold</b>"},
                hint="Re-export or remove the file.", check_name="integrity.unreadable"),
        Finding("DSA101", Severity.WARNING, "Class imbalance 4.0x in train",
                "cat has 40 images, dog 10.", subject="split:train",
                evidence={"ratio": 4.0, "counts": {"cat": 40, "dog": 10}},
                hint="Collect more or reweight.", check_name="balance.class-imbalance"),
        Finding("DSA204", Severity.INFO, "A cluster of 3 near-duplicates in train",
                "3 augmented copies of one image.", paths=tuple(paths[5:8]),
                evidence={"size": 3, "display": "images"}, hint="Deduplicate.", check_name="leak.duplicate-cluster"),
        Finding("DSA301", Severity.WARNING, "Last batch of one in val", "val has 33 images; "
                "batch size 32 leaves a last batch of 1.", subject="split:val",
                evidence={"batch_size": 32, "remainder": 1}, hint="Drop the remainder.",
                check_name="batch.last-batch", baselined=True),
    ]
    for i in range(n_extra_findings):
        findings.append(Finding("DSA101", Severity.INFO, f"Extra finding {i}", "filler",
                                paths=(f"train/cat/extra_{i}.png",), check_name="balance.class-imbalance"))
    counts = {"train": {"cat": 40, "dog": 10, XSS_CLASS: 5}, "val": {"cat": 20, "dog": 12, XSS_CLASS: 1},
              "test": {"cat": 8, "dog": 8}}
    sev_counts = {"error": 3, "warning": 1, "info": 1 + n_extra_findings}
    return ScanResult(
        root="/data/pets",
        layout={"kind": "splits", "splits": ["train", "val", "test"],
                "classes": {"train": ["cat", "dog", XSS_CLASS], "val": ["cat", "dog", XSS_CLASS],
                            "test": ["cat", "dog"]}, "manifest": None, "files": 105},
        summary={"files": 105, "images": 104, "unreadable": 1, "counts": counts,
                 "duration_seconds": 1.25, "cache": {"hits": 3, "misses": 102}},
        findings=findings,
        check_errors=[CheckError("DSA305", "order.tail-split", "ValueError: boom <b>", "Traceback ...")],
        config={"fail_on": "error", "batch": {"batch_size": 32}},
        gate={"fail_on": "error", "passed": passed, "exit_code": 0 if passed else 1,
              "counts": sev_counts, "baselined": 1, "check_errors": 1},
        sections={
            "balance": {"train": {"imbalance_ratio": 8.0, "classes": 3},
                        "shift": [{"split": "val", "tvd": 0.12, "p_value": 0.003}]},
            "batching": {"batch_size": 32, "splits": [
                {"split": "train", "images": 55, "batches": 2, "last_batch": 23, "recommendation": "ok"},
                {"split": "val", "images": 33, "batches": 2, "last_batch": 1,
                 "recommendation": "use 33 or drop_remainder=True"}]},
            "leakage": {"cross_split_pairs": 3, "conflicting": 1},
            "probe": PROBE_SECTION,
            "custom-block": [[1, 2], {"x": 1}],
        },
        meta={"command": f"dsaudit scan /data/pets --fail-on error  # {XSS_CLASS}",
              "started": "2026-11-22T19:00:00Z", "duration_seconds": 1.25, "fingerprint": "ab12cd34ef56",
              "timings": {"index": 0.9, "checks": {"DSA001": 0.012, "DSA201": 0.25}}, "checks": CHECK_DOCS,
              "checks_run": ["DSA001", "DSA101", "DSA201", "DSA203", "DSA204", "DSA301", "DSA305"],
              "dsaudit_version": "0.1.0"},
        dsaudit_version="0.1.0",
        thumbnails=thumbs,
    )


class _Collector(HTMLParser):
    """Collects tags, attributes and text, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


@pytest.fixture(scope="module")
def page() -> str:
    return html_render.render(sample_result())


def test_hostile_names_are_text_not_markup(page):
    doc = parse(page)
    # Exactly one script element (ours) and no img without a data: source.
    assert [t for t, _ in doc.tags].count("script") == 1
    for tag, attrs in doc.tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/jpeg;base64,")
    text = "".join(doc.text)
    assert XSS_FILE in text and XSS_CLASS in text and "<b>bold</b>" in text
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in page
    assert "javascript:" not in page


def test_self_contained_no_external_references(page):
    doc = parse(page)
    for tag, attrs in doc.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith(("#", "data:")), (tag, key, value)
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert "@import" not in page and "url(http" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "img-src data:" in csp


def test_script_hash_in_csp_matches_inline_script(page):
    import hashlib

    script = parse(page).scripts
    assert len(script) == 1
    digest = base64.b64encode(hashlib.sha256(script[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page


def test_verdict_banner_comes_first_and_says_failed(page):
    body = page.split("<body>", 1)[1]
    first_section = body.index('id="verdict"')
    assert first_section < body.index('id="overview"') < body.index('id="findings"')
    banner = body[first_section:body.index("</header>")]
    assert "Gate failed" in banner and "fail-on <strong>error</strong>" in banner
    assert "<strong>3</strong> errors" in banner and "<strong>1</strong> warning" in banner
    passed = html_render.render(sample_result(passed=True))
    assert "Gate passed" in passed and "verdict-passed" in passed and "Gate failed" not in passed


def test_overview_table_and_charts(page):
    overview = page[page.index('id="overview"'):page.index('id="checks"')]
    assert overview.count("<svg") == 3  # one chart per split
    assert "&lt;script&gt;" in overview
    # test has no <script> class: marked missing with a text label, not colour alone
    assert "missing" in overview and "zero" in overview
    assert "40 <span class=\"small\">72.7%</span>" in overview  # 40 of 55 in train
    assert "TVD" in overview


def test_checks_table_status_timing_and_not_run(page):
    checks = page[page.index('id="checks"'):page.index('id="findings"')]

    def row(cid):
        return re.search(rf'<tr class="st-([a-z ]+)"><th scope="row"><a href="#check-{cid}">.*?</tr>', checks, re.S)

    assert row("DSA001").group(1) == "failed" and row("DSA101").group(1) == "findings"
    assert row("DSA301").group(1) == "baselined" and row("DSA305").group(1) == "crashed"
    assert row("DSA102").group(1) == "not run"
    assert "<td class=\"num\">0.25</td>" in row("DSA201").group(0)
    assert 'id="check-DSA102"' not in page  # no explanation for a check that did not run


def test_findings_carry_message_hint_evidence_and_explanation_link(page):
    findings = page[page.index('id="findings"'):page.index('id="gallery"')]
    assert findings.count('<article class="finding') == 6
    assert "Class imbalance 4.0x in train" in findings and "Collect more or reweight." in findings
    assert "ratio</dt><dd>4</dd>" in findings.replace(".0<", "<")
    assert 'href="#check-DSA101"' in findings and 'id="check-DSA101"' in page
    assert "Accuracy hides a minority class." in page  # the Why text from meta["checks"]
    # errors first, baselined last
    order = re.findall(r'data-check="(DSA\d+)"', findings)
    assert order[:3] == ["DSA001", "DSA201", "DSA203"] and order[-1] == "DSA301"
    assert "baselined" in findings


def test_gallery_pairs_conflicts_clusters_and_placeholders(page):
    gallery = page[page.index('id="gallery"'):page.index('id="batching"')]
    assert gallery.count('<figure class="pair') == 3
    assert gallery.count('class="pair conflict') == 2  # cat vs <script>, dog vs cat
    assert "Conflicting labels" in gallery
    assert "similarity 0.962" in gallery and "transform: hflip" in gallery and "identical bytes" in gallery
    assert 'class="cluster"' in gallery and gallery.count("<img") == 9  # 6 pair sides + 3 cluster members


def test_placeholder_when_a_thumbnail_is_missing():
    result = sample_result()
    result.thumbnails = {}
    page = html_render.render(result)
    assert "<img" not in page
    gallery = page[page.index('<section id="gallery">'):]
    assert gallery.count('class="thumb ph"') == 9 and "no preview" in page


def test_sections_batching_probe_and_metadata(page):
    batching = page[page.index('id="batching"'):page.index('id="probe"')]
    assert "<table" in batching and "use 33 or drop_remainder=True" in batching
    probe = page[page.index('id="probe"'):page.index('id="explanations"')]
    assert probe.count('<svg class="chart') == 2
    assert "97.0% [83.0%, 99.0%]  n=30" in probe and "71.0% [62.0%, 78.0%]  n=120" in probe
    assert "62.0%  n=30" in probe and "chance 50%" in probe
    assert "+35.0 points [+18.0, +52.0]  p = 0.0004" in probe
    assert probe.count('class="bar leaked"') == 2  # hatched, not colour alone
    assert 'id="section-custom-block"' in page
    meta = page[page.index('id="metadata"'):]
    assert "ab12cd34ef56" in meta and "0.1.0" in meta and "dsaudit scan /data/pets" in meta
    assert "&#34;batch_size&#34;: 32" in meta or "&quot;batch_size&quot;: 32" in meta
    assert "ValueError: boom &lt;b&gt;" in page  # check errors shown, escaped


def test_generic_sections_render_unknown_shapes():
    node = html_render._node({"a": [{"x": 1, "y": "two"}, {"x": 3, "z": None}], "b": [1, 2, 3]})
    assert node["t"] == "kv"
    table = dict(node["entries"])["a"]
    assert table["t"] == "table" and table["columns"] == ["x", "y", "z"]
    assert table["rows"] == [["1", "two", ""], ["3", "", ""]]


def test_probe_of_another_shape_still_charts_leaked_vs_clean():
    result = sample_result()
    result.sections["probe"] = {
        "accuracy_leaked": {"accuracy": 0.97, "ci": [0.90, 0.99], "n": 30},
        "accuracy_clean": {"accuracy": 0.71, "ci": [0.62, 0.79], "n": 120},
        "runs": [{"seed": 0, "acc_leaked": 0.96, "acc_clean": 0.70},
                 {"seed": 1, "acc_leaked": 0.98, "acc_clean": 0.73}]}
    page = html_render.render(result)
    probe = page[page.index('id="probe"'):page.index('id="explanations"')]
    assert "97.0% [90.0%, 99.0%]" in probe and "71.0% [62.0%, 79.0%]" in probe
    assert probe.count('class="run"') == 4 and "A is the probe" not in probe


def test_probe_without_known_keys_renders_generically():
    result = sample_result()
    result.sections["probe"] = {"status": "skipped", "reason": "TensorFlow is not installed"}
    page = html_render.render(result)
    probe = page[page.index('id="probe"'):page.index('id="explanations"')]
    assert "<svg" not in probe and "The probe did not run (skipped): TensorFlow is not installed." in probe


def test_control_characters_and_undecodable_names():
    result = sample_result()
    bad = "train/cat/bad\x07name\udcff.png"
    result.findings.append(Finding("DSA001", Severity.ERROR, "Unreadable\x00 image", "x", paths=(bad,)))
    page = html_render.render(result)
    page.encode("utf-8")  # no lone surrogates left
    assert "bad" + "name\\xff.png" in page and "\x07" not in page and "\x00" not in page


def test_bidi_and_zero_width_characters_cannot_reorder_or_hide_names():
    result = sample_result()
    result.findings.append(Finding("DSA001", Severity.ERROR, "Cannot decode spoof\u202egnp.exe", "x",
                                   paths=("train/cat/zero\u200bwidth\u200f\ufeff.png",)))
    page = html_render.render(result)
    assert not any(c in page for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                   "\u200e\u200f\u200b\u200c\u200d\ufeff"), "a raw bidi or zero-width character"
    assert "spoof\\u202egnp.exe" in page and "zero\\u200bwidth\\u200f\\ufeff.png" in page


def test_caps_and_notice_for_many_findings():
    result = sample_result(n_extra_findings=300)
    page = html_render.render(result, max_findings=50)
    assert page.count('<article class="finding') == 50
    assert "50 of 306 findings are shown in full" in page and "report.json" in page
    assert "Findings not shown in full" in page


def test_write_creates_the_file(tmp_path):
    out = html_render.write(sample_result(), tmp_path / "sub" / "report.html")
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_empty_result_renders():
    result = ScanResult(root="/x", layout={}, summary={}, findings=[], check_errors=[], config={},
                        gate={})
    page = html_render.render(result)
    assert "No verdict recorded" in page and "No findings." in page


def _huge_result() -> ScanResult:
    """60,000 images, 5,000 findings (3,000 leakage findings with pairs), thumbnails for every path."""
    classes = [f"class_{i}" for i in range(10)]
    counts = {"train": {c: 4200 for c in classes}, "val": {c: 1200 for c in classes},
              "test": {c: 600 for c in classes}}
    uris = [data_uri(p) for p in real_patches(20, size=64, seed=5)]
    findings, thumbs = [], {}
    for i in range(3000):
        a, b = f"train/class_{i % 10}/img_{i:05d}.jpg", f"val/class_{i % 10}/img_{i:05d}_copy.jpg"
        c = f"test/class_{(i + 1) % 10}/img_{i:05d}_other.jpg"
        thumbs.update({a: uris[i % 20], b: uris[(i + 1) % 20], c: uris[(i + 2) % 20]})
        pairs = [{"a": a, "b": b, "split_a": "train", "split_b": "val", "label_a": f"class_{i % 10}",
                  "label_b": f"class_{i % 10}", "kind": "near", "distance": 3, "similarity": 0.97,
                  "transform": None},
                 {"a": a, "b": c, "split_a": "train", "split_b": "test", "label_a": f"class_{i % 10}",
                  "label_b": f"class_{(i + 1) % 10}", "kind": "near", "distance": 5, "similarity": 0.93,
                  "transform": "hflip"}]
        findings.append(Finding("DSA201", Severity.ERROR, f"Leak {i}", "An image in two splits. " * 5,
                                paths=(a, b, c), evidence={"pairs": pairs, "group": list(range(40))},
                                hint="Keep each image in one split only.", check_name="leak.cross-split"))
    for i in range(2000):
        path = f"train/class_{i % 10}/broken_{i:05d}.png"
        findings.append(Finding("DSA001", Severity.ERROR, f"Unreadable {i}", "cannot identify image file",
                                paths=(path,), evidence={"error": "x" * 500}, check_name="integrity.unreadable"))
    return ScanResult(
        root="/data/huge", layout={"kind": "splits", "splits": list(counts), "classes": {
            s: classes for s in counts}, "manifest": None, "files": 60000},
        summary={"files": 60000, "images": 60000, "unreadable": 2000, "counts": counts,
                 "duration_seconds": 80.0, "cache": {"hits": 0, "misses": 60000}},
        findings=findings, check_errors=[], config={}, sections={},
        gate={"fail_on": "error", "passed": False, "exit_code": 1,
              "counts": {"error": 5000, "warning": 0, "info": 0}, "baselined": 0, "check_errors": 0},
        meta={"checks": CHECK_DOCS}, thumbnails=thumbs)


def test_huge_dataset_report_stays_small_and_says_so():
    result = _huge_result()
    page = html_render.render(result)
    size = len(page.encode("utf-8"))
    print(f"\n60,000-image report with 5,000 findings: {size / 1e6:.2f} MB")
    assert size < 15_000_000
    assert page.count('<article class="finding') == html_render.MAX_FINDINGS
    assert page.count("<img") <= html_render.MAX_THUMBNAILS
    assert "1,000 of 5,000 findings are shown in full" in page
    assert re.search(r"The gallery shows [\d,]+ of 6,000 duplicate pairs", page)
    assert "report.json" in page
    parse(page)  # well-formed enough for a parser


def test_byte_cap_shrinks_the_report():
    result = _huge_result()
    page = html_render.render(result, max_bytes=1_500_000)
    assert len(page.encode("utf-8")) <= 1_500_000
    assert "findings are shown in full" in page


def test_generic_dicts_of_records_become_tables_and_wide_ones_are_transposed():
    classes = html_render._node({"one": {"count": 63, "share": 0.315}, "two": {"count": 58, "share": 0.29}})
    assert classes["t"] == "table" and classes["columns"] == ["", "count", "share"]
    assert classes["rows"][0] == ["one", "63", "0.315"]
    sets = [{"name": s, "samples": n, "batch_size": 32, "remainder": n % 32, "steps": -(-n // 32),
             "last_batch": n % 32 or 32, "a": 1, "b": 2, "recommendation": {"largest_exact": 25}}
            for s, n in (("train", 200), ("val", 64))]
    table = html_render._node(sets)
    assert table.get("transposed") and table["columns"] == ["", "train", "val"]
    assert ["recommendation.largest_exact", "25", "25"] in table["rows"]
    deep = html_render._node({"a": {"x": {"y": {"z": 1}}}, "b": {"x": {"y": {"z": 2}}}})
    assert deep["t"] == "kv"
