"""The HTML report's inline SVG charts: images per class, and the probe's accuracies and inflation.

Plain SVG strings (no script, no external resource: the report's Content-Security-Policy stays as
it is); every text in them is cleaned (render/text.py) and escaped.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from markupsafe import Markup, escape

from dsaudit.render.text import clean as clean_text

MAX_CHART_CLASSES = 30         # bars per class-count chart


def num(value: Any, digits: int = 4) -> str:
    """Numbers for people: thousands separators for ints, 4 significant digits for floats."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "\u221e"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return str(value)


def _svg_text(x: float, y: float, text: str, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>'
            f"{escape(clean_text(text))}</text>")


def _truncate(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def bar_chart(title: str, counts: Mapping[str, int]) -> Markup:
    """Horizontal bars, one per class, labelled with class name, count and share."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(counts.values()) or 1
    shown = items[:MAX_CHART_CLASSES]
    biggest = max((v for _, v in shown), default=0) or 1
    label_w, bar_w, value_w, row_h, top = 150, 260, 110, 20, 24
    width = label_w + bar_w + value_w
    height = top + row_h * len(shown) + (22 if len(items) > len(shown) else 6)
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(clean_text(title))}</title>",
           _svg_text(0, 15, title, cls="ctitle")]
    for i, (name, value) in enumerate(shown):
        y = top + i * row_h
        w = max(1.0, bar_w * value / biggest) if value else 0
        out.append(f"<g><title>{escape(clean_text(name))}: {value:,}</title>")
        out.append(_svg_text(label_w - 6, y + 14, _truncate(name, 22), anchor="end"))
        if value:
            out.append(f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}"/>')
            out.append(_svg_text(label_w + w + 5, y + 14, f"{value:,} ({100 * value / total:.1f}%)"))
        else:
            out.append(_svg_text(label_w + 4, y + 14, "\u26a0 0 (missing)", cls="missing"))
        out.append("</g>")
    if len(items) > len(shown):
        out.append(_svg_text(0, height - 6, f"+{len(items) - len(shown):,} more classes in the table",
                             cls="note"))
    out.append("</svg>")
    return Markup("".join(out))


def _as_ci(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) for v in value):
        return float(value[0]), float(value[1])
    return None


def _stat(value: Any) -> tuple[float, tuple[float, float] | None, int | None] | None:
    """(mean, ci, n) from a number or a dict like {"accuracy"/"mean", "ci"/"ci_low"..., "n"}."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), None, None
    if not isinstance(value, Mapping):
        return None
    mean = None
    for key in ("accuracy", "acc", "mean", "value", "estimate", "score"):
        if isinstance(value.get(key), (int, float)) and not isinstance(value.get(key), bool):
            mean = float(value[key])
            break
    if mean is None:
        return None
    ci = None
    for key in ("ci", "ci95", "interval", "confidence_interval"):
        ci = _as_ci(value.get(key)) or ci
    for lo, hi in (("ci_low", "ci_high"), ("low", "high"), ("lower", "upper"), ("ci_lo", "ci_hi")):
        if ci is None and isinstance(value.get(lo), (int, float)) and isinstance(value.get(hi), (int, float)):
            ci = float(value[lo]), float(value[hi])
    n = value.get("n") if isinstance(value.get("n"), int) else None
    return mean, ci, n


def probe_status(probe: Any) -> str:
    """One sentence when the probe did not run (the section says why)."""
    if not isinstance(probe, Mapping) or probe.get("status") in (None, "ran"):
        return ""
    reason = probe.get("reason")
    return f"The probe did not run ({probe.get('status')})" + (f": {reason}." if reason else ".")


def _probe_groups(probe: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Find "accuracy on leaked vs clean" figures in a probe section, whatever its exact shape."""
    sources: list[Mapping[str, Any]] = [probe]
    for key in ("accuracy", "accuracies", "results", "summary", "val", "validation"):
        if isinstance(probe.get(key), Mapping):
            sources.append(probe[key])
    groups: dict[str, dict[str, Any]] = {}
    for source in sources:
        for key, value in source.items():
            k = str(key).lower()
            which = "leaked" if "leak" in k else "clean" if "clean" in k else None
            if which is None or which in groups or k.endswith(("_ci", "_n", "count", "_count")):
                continue
            stat = _stat(value)
            if stat is None or not (0.0 <= stat[0] <= 1.0):
                continue
            mean, ci, n = stat
            ci = ci or _as_ci(source.get(f"{key}_ci"))
            groups[which] = {"mean": mean, "ci": ci, "n": n, "runs": []}
    runs = probe.get("runs")
    if isinstance(runs, list):
        for run in runs:
            if not isinstance(run, Mapping):
                continue
            for key, value in run.items():
                k = str(key).lower()
                which = "leaked" if "leak" in k else "clean" if "clean" in k else None
                stat = _stat(value) if which else None
                if stat and 0.0 <= stat[0] <= 1.0:
                    groups.setdefault(which, {"mean": None, "ci": None, "n": None, "runs": []})
                    groups[which]["runs"].append(stat[0])
    out = []
    for which, label in (("leaked", "Leaked validation images"), ("clean", "Clean validation images")):
        group = groups.get(which)
        if not group:
            continue
        if group["mean"] is None and group["runs"]:
            group["mean"] = sum(group["runs"]) / len(group["runs"])
        out.append({"key": which, "label": label, **group})
    return out


def is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _accuracy_chart(title: str, rows: list[dict[str, Any]], chance: float | None = None) -> Markup:
    """Horizontal accuracy bars on a 0-100% axis with 95% CI whiskers and per-run dots.

    Hatched bars are leaked images, solid bars clean ones (pattern and label, not colour alone)."""
    label_w, plot_w, right, row_h, top = 300, 320, 250, 40, 30
    width, height = label_w + plot_w + right, top + row_h * len(rows) + 34
    x = lambda v: label_w + plot_w * max(0.0, min(1.0, v))  # noqa: E731
    out = [f'<svg class="chart probe" role="img" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(clean_text(title))}</title>", _svg_text(0, 16, title, cls="ctitle")]
    bottom = height - 26
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<line class="grid" x1="{x(tick):.1f}" y1="{top - 4}" x2="{x(tick):.1f}" y2="{bottom}"/>')
        out.append(_svg_text(x(tick), height - 10, f"{tick:.0%}", anchor="middle", cls="tick"))
    for i, g in enumerate(rows):
        y = top + i * row_h
        out.append(_svg_text(label_w - 8, y + 19, _truncate(g["label"], 46), anchor="end"))
        out.append(f'<rect class="bar {"leaked" if g.get("hatch") else "clean"}" x="{label_w}" y="{y + 6}" '
                   f'width="{x(g["mean"]) - label_w:.1f}" height="{row_h - 14}"/>')
        text = f"{g['mean']:.1%}"
        cy = y + 6 + (row_h - 14) / 2
        if g.get("ci"):
            lo, hi = g["ci"]
            out.append(f'<line class="ci" x1="{x(lo):.1f}" y1="{cy:.1f}" x2="{x(hi):.1f}" y2="{cy:.1f}"/>')
            for v in (lo, hi):
                out.append(f'<line class="ci" x1="{x(v):.1f}" y1="{cy - 7:.1f}" x2="{x(v):.1f}" '
                           f'y2="{cy + 7:.1f}"/>')
            text += f" [{lo:.1%}, {hi:.1%}]"
        for v in (g.get("runs") or [])[:50]:
            out.append(f'<circle class="run" cx="{x(v):.1f}" cy="{cy:.1f}" r="3"/>')
        if g.get("n"):
            text += f"  n={g['n']:,}"
        out.append(_svg_text(label_w + plot_w + 8, y + 19, text))
    if chance is not None and is_num(chance):
        out.append(f'<line class="chance" x1="{x(chance):.1f}" y1="{top - 8}" x2="{x(chance):.1f}" '
                   f'y2="{bottom}"/>')
        out.append(_svg_text(x(chance), top - 10, f"chance {chance:.0%}", anchor="middle", cls="tick"))
    out.append("</svg>")
    return Markup("".join(out))


def _inflation_chart(title: str, value: float, interval: tuple[float, float] | None,
                     p_value: Any) -> Markup:
    """One point with its 95% interval on an axis of accuracy points, zero marked."""
    lo, hi = interval if interval else (value, value)
    span = max(0.1, abs(lo), abs(hi), abs(value)) * 1.15
    label_w, plot_w, right, top = 300, 320, 250, 30
    width, height = label_w + plot_w + right, top + 40 + 34
    x = lambda v: label_w + plot_w * (v + span) / (2 * span)  # noqa: E731
    out = [f'<svg class="chart probe" role="img" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(clean_text(title))}</title>", _svg_text(0, 16, title, cls="ctitle")]
    bottom = height - 26
    for tick in (-span, -span / 2, 0.0, span / 2, span):
        out.append(f'<line class="{"zero" if tick == 0 else "grid"}" x1="{x(tick):.1f}" y1="{top - 4}" '
                   f'x2="{x(tick):.1f}" y2="{bottom}"/>')
        out.append(_svg_text(x(tick), height - 10, f"{100 * tick:+.0f}" if tick else "0",
                             anchor="middle", cls="tick"))
    cy = top + 18
    out.append(_svg_text(label_w - 8, cy + 5, "A \u2212 B on leaked images (points)", anchor="end"))
    if interval:
        out.append(f'<line class="ci" x1="{x(lo):.1f}" y1="{cy}" x2="{x(hi):.1f}" y2="{cy}"/>')
        for v in (lo, hi):
            out.append(f'<line class="ci" x1="{x(v):.1f}" y1="{cy - 8}" x2="{x(v):.1f}" y2="{cy + 8}"/>')
    out.append(f'<rect class="point" x="{x(value) - 6:.1f}" y="{cy - 6}" width="12" height="12"/>')
    text = f"{100 * value:+.1f} points"
    if interval:
        text += f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    if is_num(p_value):
        text += f"  p = {p_value:.2g}"
    out.append(_svg_text(label_w + plot_w + 8, cy + 5, text))
    out.append("</svg>")
    return Markup("".join(out))


def probe_charts(probe: Any) -> list[Markup]:
    """Charts for the probe section: the counterfactual design of dsaudit's probe (runs A/B,
    inflation with interval, leaked vs clean context with Wilson intervals), or any section that
    names accuracies on leaked and clean images."""
    if not isinstance(probe, Mapping):
        return []
    charts: list[Markup] = []
    for key, what in (("leakage", "duplicate pairs"), ("group_leakage", "leaked groups")):
        res = probe.get(key)
        if not isinstance(res, Mapping) or res.get("status") != "ran":
            continue
        inf = res.get("inflation") if isinstance(res.get("inflation"), Mapping) else {}
        naive = (res.get("context") or {}).get("naive_gap") if isinstance(res.get("context"), Mapping) else None
        naive = naive if isinstance(naive, Mapping) else {}
        learn = res.get("learnability") if isinstance(res.get("learnability"), Mapping) else {}
        rows: list[dict[str, Any]] = []
        leaked = _stat(naive.get("leaked"))
        if is_num(inf.get("accuracy_with_partners")):
            rows.append({"label": "Leaked val images, with their copies (A)",
                         "mean": float(inf["accuracy_with_partners"]), "hatch": True,
                         "ci": leaked[1] if leaked else None, "n": inf.get("n")})
        elif leaked:
            rows.append({"label": "Leaked val images", "mean": leaked[0], "ci": leaked[1],
                         "n": leaked[2], "hatch": True})
        if is_num(inf.get("accuracy_without_partners")):
            rows.append({"label": "Leaked val images, copies replaced (B)",
                         "mean": float(inf["accuracy_without_partners"]), "n": inf.get("n"), "hatch": True})
        clean = _stat(naive.get("clean"))
        if clean:
            rows.append({"label": "Clean val images (A)", "mean": clean[0], "ci": clean[1], "n": clean[2]})
        rows = [r for r in rows if 0.0 <= r["mean"] <= 1.0]
        if rows:
            charts.append(_accuracy_chart(f"Probe on {what}: accuracy (95% CI)", rows, learn.get("chance")))
        if is_num(inf.get("inflation")):
            charts.append(_inflation_chart(f"Inflation from {what}", float(inf["inflation"]),
                                           _as_ci(inf.get("interval")), inf.get("p_value")))
    if not charts:
        groups = _probe_groups(probe)
        if groups:
            rows = [{**g, "hatch": g["key"] == "leaked"} for g in groups]
            charts.append(_accuracy_chart("Probe accuracy (95% CI)", rows))
    return charts
