"""The HTML report's content section: image quality, drift between splits, outliers and likely label
errors (DSA40x-43x), each with small inline SVG plots and thumbnails of the images it names.

Reads the report's ``sections["content"]`` and the content findings of a ScanResult, nothing else.
The plots are plain SVG strings built here (no script, no external resource: the report's
Content-Security-Policy stays as it is); every text in them is escaped.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from markupsafe import Markup, escape

from dsaudit.findings import Finding

MAX_THUMBS = 8          # thumbnails per family card
SPLIT_CLASS = {"train": "s0", "val": "s1", "test": "s2"}
FAMILIES = (  # (key, title): a content check declares its key (Check.family, in meta["checks"])
    ("quality", "Image quality"),
    ("drift", "Drift between splits"),
    ("outliers", "Outliers"),
    ("labels", "Likely label errors"),
)


def _text(x: float, y: float, text: str, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{escape(str(text))}</text>'


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def histogram_svg(title: str, hist: Mapping[str, Any], threshold: float | None = None) -> Markup:
    """Bars of a histogram {"edges": [...], "counts": {group: [...]}} (groups stacked, "flagged" in
    the warning colour, splits in their own colours); an optional dashed line at `threshold`."""
    edges = list(hist.get("edges") or [])
    counts = {str(k): list(v) for k, v in (hist.get("counts") or {}).items()}
    if len(edges) < 2 or not counts:
        return Markup("")
    width, height, left, top, bottom = 320, 130, 8, 22, 20
    plot_w, plot_h = width - 2 * left, height - top - bottom
    nb = len(edges) - 1
    totals = [sum(c[i] for c in counts.values()) for i in range(nb)]
    biggest = max(totals) or 1
    out = [f'<svg class="chart hist" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>', _text(0, 14, title, cls="ctitle")]
    bw = plot_w / nb
    base = [0.0] * nb
    for g, c in sorted(counts.items(), key=lambda kv: kv[0] == "flagged"):
        cls = "flag" if g == "flagged" else SPLIT_CLASS.get(g, "s0")
        for i, v in enumerate(c):
            if not v:
                continue
            h = plot_h * v / biggest
            y = top + plot_h - base[i] - h
            out.append(f'<rect class="{cls}" x="{left + i * bw:.1f}" y="{y:.1f}" width="{max(bw - 1, 1):.1f}" '
                       f'height="{h:.1f}"><title>{escape(g)}: {v:,} in {_fmt(edges[i])}..{_fmt(edges[i + 1])}'
                       f'</title></rect>')
            base[i] += h
    lo, hi = float(edges[0]), float(edges[-1])
    if threshold is not None and lo < threshold < hi:
        x = left + plot_w * (threshold - lo) / (hi - lo)
        out.append(f'<line class="cut" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}"/>')
    out.append(_text(left, height - 5, _fmt(lo), cls="note"))
    out.append(_text(width - left, height - 5, _fmt(hi), anchor="end", cls="note"))
    legend = " / ".join(sorted(counts))
    out.append(_text(width / 2, height - 5, legend, anchor="middle", cls="note"))
    out.append("</svg>")
    return Markup("".join(out))


def drift_svg(split: str, props: Mapping[str, Any], domain: Mapping[str, Any] | None) -> Markup:
    """One bar per property: KS distance train vs `split` (drifted ones highlighted), and the domain
    classifier's AUC with its interval on a 0.5..1 scale."""
    rows = [(k, float(v.get("ks", v.get("tvd", 0.0))), bool(v.get("drifted"))) for k, v in props.items()]
    rows.sort(key=lambda r: -r[1])
    label_w, bar_w, row_h, top = 120, 200, 16, 24
    extra = 34 if domain else 0
    width, height = label_w + bar_w + 60, top + row_h * len(rows) + extra + 6
    out = [f'<svg class="chart drift" role="img" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>Drift train vs {escape(split)}</title>',
           _text(0, 14, f"train vs {split}: KS distance per property", cls="ctitle")]
    for i, (name, value, drifted) in enumerate(rows):
        y = top + i * row_h
        w = max(1.0, bar_w * min(value, 1.0))
        out.append(_text(label_w - 6, y + 12, name.replace("_", " "), anchor="end"))
        out.append(f'<rect class="{"flag" if drifted else "bar"}" x="{label_w}" y="{y + 2}" width="{w:.1f}" '
                   f'height="{row_h - 4}"><title>{escape(name)}: {value:.3f}'
                   f'{" (drifted)" if drifted else ""}</title></rect>')
        out.append(_text(label_w + w + 4, y + 12, f"{value:.2f}", cls="note"))
    if domain:
        y = top + row_h * len(rows) + 8
        auc = float(domain.get("auc", 0.5))
        lo, hi = (list(domain.get("interval") or [auc, auc]) + [auc, auc])[:2]

        def xs(v: float) -> float:
            return label_w + bar_w * (min(max(v, 0.5), 1.0) - 0.5) / 0.5

        out.append(_text(label_w - 6, y + 12, "domain AUC", anchor="end"))
        out.append(f'<line class="axis" x1="{label_w}" y1="{y + 8}" x2="{label_w + bar_w}" y2="{y + 8}"/>')
        out.append(f'<line class="ci" x1="{xs(lo):.1f}" y1="{y + 8}" x2="{xs(hi):.1f}" y2="{y + 8}"/>')
        out.append(f'<circle class="{"flag" if domain.get("drifted") else "bar"}" cx="{xs(auc):.1f}" cy="{y + 8}" '
                   f'r="4"><title>AUC {auc:.3f} [{float(lo):.3f}, {float(hi):.3f}]</title></circle>')
        out.append(_text(label_w + bar_w + 4, y + 12, f"{auc:.2f}", cls="note"))
        out.append(_text(label_w, y + 24, "0.5", cls="note"))
        out.append(_text(label_w + bar_w, y + 24, "1", anchor="end", cls="note"))
    out.append("</svg>")
    return Markup("".join(out))


def content_view(result: Any, thumb: Callable[[str], dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The families present in the report, each {"key", "title", "charts", "cards"}; a card is a
    finding's title with thumbnails of its first images. `thumb(path)` gives the thumbnail dict
    the template's thumb macro takes (or None)."""
    section = (result.sections or {}).get("content")
    if not isinstance(section, Mapping):
        return []
    docs = (result.meta or {}).get("checks") or {}

    def family(f: Finding) -> str:
        doc = docs.get(f.check_id)
        return str(doc.get("family") or "") if isinstance(doc, Mapping) else ""

    findings: list[Finding] = [f for f in result.findings if family(f)]
    families = []
    for key, title in FAMILIES:
        charts: list[Markup] = []
        if key == "quality":
            for cid, q in sorted((section.get("quality") or {}).items()):
                if isinstance(q, Mapping) and q.get("histogram"):
                    charts.append(histogram_svg(f"{cid} {q.get('score', '')}: {q.get('flagged', 0):,} flagged",
                                                q["histogram"]))
        elif key == "drift":
            for split, d in sorted((section.get("drift") or {}).items()):
                if isinstance(d, Mapping) and isinstance(d.get("properties"), Mapping):
                    charts.append(drift_svg(split, d["properties"], d.get("domain")))
                    for prop, v in d["properties"].items():
                        if isinstance(v, Mapping) and v.get("drifted") and v.get("histogram"):
                            charts.append(histogram_svg(f"{prop} by split", v["histogram"]))
        elif key == "outliers":
            o = section.get("outliers")
            if isinstance(o, Mapping) and o.get("histogram"):
                charts.append(histogram_svg("distance to class neighbours / class median", o["histogram"]))
        else:
            ln = section.get("label_neighbours")
            if isinstance(ln, Mapping) and ln.get("histogram"):
                charts.append(histogram_svg("share of neighbours with one other label", ln["histogram"]))
        cards = []
        for f in findings:
            if family(f) != key:
                continue
            thumbs = [t for t in (thumb(p) for p in f.paths[:MAX_THUMBS]) if t]
            cards.append({"check_id": f.check_id, "title": f.title, "severity": str(f.severity), "thumbs": thumbs})
        if charts or cards:
            families.append({"key": key, "title": title, "charts": charts, "cards": cards})
    probe = section.get("label_probe")
    if isinstance(probe, Mapping) and probe.get("status") != "ran" and families:
        for fam in families:
            if fam["key"] == "labels":
                fam["note"] = f"Confident learning (DSA431): {probe.get('status')}, {probe.get('reason', '')}"
    return families
