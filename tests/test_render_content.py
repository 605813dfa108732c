"""The HTML report's content section (render/content_html.py): each family with its plots and the
thumbnails of the images it names, from a real scan; self-contained and escaped like the rest."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image, ImageFilter

from dsaudit.config import AuditConfig, ProbeConfig
from dsaudit.pipeline import scan
from dsaudit.render import html as html_render
from dsaudit.render.content_html import drift_svg, histogram_svg
from imagery import write_image
from test_quality import POOL

HOSTILE = "<img src=x onerror=alert(1)>.png"


def _dataset(root):
    patches = POOL[:100]     # well-exposed, detailed real patches
    for i, p in enumerate(patches[:60]):
        write_image(root / "train" / ("a" if i % 2 else "b") / f"t{i:03d}.png", p)
    for i, p in enumerate(patches[60:]):   # a darker, smaller JPEG test split
        dark = Image.fromarray((p * 0.5).astype(np.uint8)).resize((20, 20))
        write_image(root / "test" / ("a" if i % 2 else "b") / f"s{i:03d}.jpg", np.asarray(dark))
    blurred = Image.fromarray(patches[0]).filter(ImageFilter.GaussianBlur(3))
    write_image(root / "train" / "a" / HOSTILE, np.asarray(blurred))


def test_content_section_has_each_family_plots_and_thumbnails(tmp_path):
    _dataset(tmp_path / "data")
    cfg = AuditConfig(select=("DSA4*",), jobs=1, probe=ProbeConfig(mode="off"))
    result = scan(tmp_path / "data", cfg, thumbnails=True)
    ids = {f.check_id for f in result.findings}
    assert {"DSA403", "DSA410", "DSA411"} <= ids
    assert [f.paths for f in result.findings if f.check_id == "DSA403"] == [("train/a/" + HOSTILE,)]
    page = html_render.render(result)
    section = page[page.index('<section id="content">'):]
    section = section[:section.index("</section>")]
    for fam in ("content-quality", "content-drift"):
        assert f'id="{fam}"' in section
    assert section.count("<svg") >= 6                      # score histograms + drift per property
    assert "KS distance per property" in section and "domain AUC" in section
    assert re.search(r'<img class="thumb" src="data:image/jpeg;base64,', section)
    assert HOSTILE not in page and "&lt;img src=x onerror=alert(1)&gt;.png" in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)
    assert '<a href="#content">' in page


def test_plots_escape_and_handle_odd_input():
    svg = histogram_svg("<b>", {"edges": [0, 1, 2], "counts": {"flagged": [1, 0], "<x>": [3, 2]}}, threshold=1.5)
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "&lt;x&gt;" in svg and 'class="cut"' in svg
    assert histogram_svg("t", {"edges": [], "counts": {}}) == ""
    d = drift_svg("test", {"brightness": {"ks": 0.6, "drifted": True}, "format": {"tvd": 0.0, "drifted": False}},
                  {"auc": 0.91, "interval": [0.88, 0.94], "drifted": True})
    assert d.count("<rect") == 2 and "AUC 0.910" in d
