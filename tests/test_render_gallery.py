"""The report's gallery is driven by the display a finding declares, and says how a pair matched in
words; the thumbnail budget is spent on every group's first pair before any group's second."""

from __future__ import annotations

from dsaudit.findings import Finding, ScanResult, Severity
from dsaudit.render import html as html_render
from imagery import real_patches
from test_render_html import data_uri


def _result(findings, thumbs):
    return ScanResult(root="/d", layout={"kind": "splits"}, summary={}, findings=findings, check_errors=[],
                      config={}, gate={"fail_on": "error", "passed": False}, thumbnails=thumbs)


def _pair(a, b, **kw):
    return {"a": a, "b": b, "split_a": "train", "split_b": "val", "label_a": "x", "label_b": "x", **kw}


def test_pairs_are_described_in_words_a_user_can_check():
    words = html_render.match_words
    assert words({"kind": "bytes"}) == "The same file, byte for byte."
    assert words({"kind": "pixels"}).startswith("The same pixels, saved as another file")
    assert words({"kind": "near", "transform": "hflip+rotate -7deg+crop/zoom", "similarity": 0.95}) == (
        "The right image is the left one mirrored left to right, turned by about 7\u00b0, cropped or zoomed "
        "(similarity 0.95 once lined up).")
    assert words({"kind": "near", "transform": ""}) == "The right image looks like the left one, re-saved or resized."


def test_the_declared_display_decides_what_the_gallery_shows_not_the_check_id():
    uris = [data_uri(p) for p in real_patches(4, 32, seed=9)]
    thumbs = {"t/a.png": uris[0], "v/a.png": uris[1], "t/b.png": uris[2], "v/b.png": uris[3]}
    shown = Finding("DSA777", Severity.WARNING, "A future check with pairs", "m", paths=("t/a.png", "v/a.png"),
                    evidence={"display": "pairs", "pairs": [_pair("t/a.png", "v/a.png", kind="bytes")]})
    strip = Finding("DSA778", Severity.WARNING, "A future check with images", "m", paths=("t/b.png", "v/b.png"),
                    evidence={"display": "images"})
    page = html_render.render(_result([shown, strip], thumbs))
    gallery = page[page.index('<section id="gallery">'):]
    assert "A future check with pairs" in gallery and "The same file, byte for byte." in gallery
    assert "A future check with images" in gallery and gallery.count(uris[2]) == 1
    card = page[page.index('id="findings-list"'):page.index('<section id="gallery">')]
    assert card.count(uris[0]) == 1 and "<dt>display</dt>" not in card  # the card shows its pair, not the key


def test_every_group_gets_its_first_pair_before_any_group_its_second():
    uris = [data_uri(p) for p in real_patches(40, 32, seed=4, stride=16)]
    findings, thumbs = [], {}
    for i in range(10):
        pairs = []
        for j in range(2):
            a, b = f"t/{i}_{j}.png", f"v/{i}_{j}.png"
            thumbs[a], thumbs[b] = uris[4 * i + 2 * j], uris[4 * i + 2 * j + 1]
            pairs.append(_pair(a, b, kind="near", similarity=0.95))
        findings.append(Finding("DSA202", Severity.ERROR, f"group {i}", "m", paths=(), evidence={"pairs": pairs}))
    one = len(uris[0])
    # room for the 20 first-pair images of the gallery and a few more: no group is left without images
    page = html_render.render(_result(findings, thumbs), max_thumbnail_bytes=int(one * 22.5))
    gallery = page[page.index('<section id="gallery">'):]
    for i in range(10):
        group = gallery[gallery.index(f"group {i}</h3>"):]
        group = group[:group.index("</div>\n</div>") if "</div>\n</div>" in group else len(group)]
        assert thumbs[f"t/{i}_0.png"] in group and thumbs[f"v/{i}_0.png"] in group
    assert "left out to keep this file within" in page
