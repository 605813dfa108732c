"""The HTML report: one self-contained file a reviewer opens in a browser, online or not.

Everything is inline: CSS, SVG charts, thumbnails as ``data:`` URIs and a small vanilla script that
adds sorting and filtering (the page is complete without it). A Content-Security-Policy allows no
network access at all and only this script (by hash), so even a name that slipped past escaping could
not run code or fetch anything. Templates live in ``render/templates`` and are rendered by Jinja2
with autoescaping on; every file, class and check text is data, never markup.

This module reads a :class:`~dsaudit.findings.ScanResult` and nothing else of dsaudit. Caps keep
reports of huge datasets small (findings shown, gallery pairs, embedded thumbnails and their bytes);
the report says when a cap was hit and points to report.json, which has everything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from dsaudit.findings import Finding, ScanResult, Severity
from dsaudit.render.charts import bar_chart, is_num, num, probe_charts, probe_status
from dsaudit.render.content_html import content_view
from dsaudit.render.text import clean

# Caps for huge datasets. The defaults keep a report of thousands of findings around a few MB.
MAX_FINDINGS = 1000            # finding cards rendered in full (the rest are counted per check)
MAX_PAIRS = 6000               # pairs shown in the gallery, paged (all of them are in report.json)
MAX_PAIRS_PER_FINDING = 12     # pairs shown per finding in the gallery
CARD_PAIRS = 1                 # pairs shown side by side in the finding card itself
MAX_CLUSTER_MEMBERS = 8        # thumbnails per duplicate cluster
EAGER_CARDS = 20               # finding cards whose images load with the page (the rest as scrolled to)
GALLERY_PAGE = 50              # groups per gallery page (the script pages; without it all show)
MAX_THUMBNAILS = 20000         # <img> thumbnails embedded in total: a safety cap, the bytes bind
MAX_THUMBNAIL_BYTES = 8_000_000  # bytes of data URIs embedded in total: the budget (within MAX_BYTES)
MAX_BYTES = 14_000_000         # the whole file; caps are halved until the report fits
MAX_TABLE_ROWS = 300           # rows of any generic table / classes in the overview table

SEVERITY_ICON = {"error": "\u2716", "warning": "\u25b2", "info": "\u2139"}  # ✖ ▲ ℹ
_DATA_URI = re.compile(r"^data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]+$")

_env: Environment | None = None


def _environment() -> Environment:
    global _env
    if _env is None:
        env = Environment(loader=PackageLoader("dsaudit.render", "templates"), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
        env.filters["num"] = num
        env.filters["anchor"] = _anchor
        _env = env
    return _env


def clean_text(text: str) -> str:
    """Drop control characters; show undecodable file-name bytes as ``\\xNN`` and bidi controls and
    zero-width characters as ``\\uXXXX`` (applied to the whole page, so no name in it can reorder or
    hide what the page shows)."""
    return clean(text)




def _anchor(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(value))


def _short(value: Any, limit: int = 160) -> str:
    """A compact one-line rendering of an evidence value."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = num(value)
    elif isinstance(value, (list, tuple)):
        parts = [_short(v, 60) for v in value[:5]]
        more = f", \u2026 (+{len(value) - 5:,} more)" if len(value) > 5 else ""
        text = "[" + ", ".join(parts) + more + "]"
    elif isinstance(value, Mapping) and all(_scalar(v) for v in value.values()):
        text = ", ".join(f"{k}: {_short(v, 60)}" for k, v in value.items())
    elif isinstance(value, Mapping):
        text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# --------------------------------------------------------------------------------------------
# Thumbnails under a budget


@dataclass
class _Thumbs:
    uris: Mapping[str, str]
    max_count: int
    max_bytes: int
    count: int = 0
    bytes: int = 0
    capped: int = 0      # wanted but not embedded because of the caps
    missing: int = 0     # no thumbnail available for the path

    def get(self, path: str) -> dict[str, Any]:
        uri = self.uris.get(path)
        if not isinstance(uri, str) or not _DATA_URI.match(uri):
            self.missing += 1
            return {"uri": None, "reason": "no preview"}
        if self.count >= self.max_count or self.bytes + len(uri) > self.max_bytes:
            self.capped += 1
            return {"uri": None, "reason": "not embedded (size cap)"}
        self.count += 1
        self.bytes += len(uri)
        return {"uri": uri, "reason": ""}


# --------------------------------------------------------------------------------------------
# Generic rendering of section blocks published by checks (unknown shapes still show)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool)) or (
        isinstance(value, (list, tuple)) and len(value) <= 12
        and all(isinstance(v, (str, int, float, bool)) or v is None for v in value))


def _flatten(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """One level of nested dicts becomes "outer.inner" columns; None when deeper than that."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            if not all(_scalar(v) for v in value.values()):
                return None
            for k2, v2 in value.items():
                flat[f"{key}.{k2}"] = v2
        elif _scalar(value):
            flat[str(key)] = value
        else:
            return None
    return flat


def _records(names: list[str] | None, records: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """A table for records (list items or dict values). Wide, short tables are transposed so
    that each record is a column (for example one column per split)."""
    flat = [_flatten(r) for r in records[:MAX_TABLE_ROWS]]
    if any(f is None for f in flat):
        return None
    columns: list[str] = []
    for row in flat:
        for key in row:  # type: ignore[union-attr]
            if key not in columns:
                columns.append(key)
    more = max(0, len(records) - MAX_TABLE_ROWS)
    if len(columns) > 8 and len(flat) <= 10:
        heads = names or [str(r.get("name", r.get("split", i + 1))) for i, r in enumerate(records)]
        rows = [[c] + [_cell(row.get(c)) for row in flat] for c in columns]  # type: ignore[union-attr]
        return {"t": "table", "columns": [""] + heads, "rows": rows, "more": 0, "transposed": True}
    rows = [[_cell(row.get(c)) for c in columns] for row in flat]  # type: ignore[union-attr]
    if names:
        columns = [""] + columns
        rows = [[name] + row for name, row in zip(names, rows)]
    return {"t": "table", "columns": columns, "rows": rows, "more": more}


def _node(value: Any, depth: int = 0) -> dict[str, Any]:
    """A render tree for any JSON-able block: lists of records and dicts of records become tables,
    other dicts key/value lists, so that unknown shapes still show readably."""
    if depth > 5:
        return {"t": "text", "v": _short(value, 300)}
    if isinstance(value, Mapping):
        if len(value) >= 2 and all(isinstance(v, Mapping) and v for v in value.values()):
            table = _records([str(k) for k in value], list(value.values()))
            if table is not None:
                return table
        return {"t": "kv", "entries": [(str(k), _node(v, depth + 1)) for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, Mapping) for v in value):
            table = _records(None, list(value))
            if table is not None:
                return table
            return {"t": "list", "entries": [_node(v, depth + 1) for v in value[:50]],
                    "more": max(0, len(value) - 50)}
        if all(not isinstance(v, (Mapping, list, tuple)) for v in value):
            return {"t": "text", "v": _short(list(value), 600)}
        return {"t": "list", "entries": [_node(v, depth + 1) for v in value[:50]],
                "more": max(0, len(value) - 50)}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"t": "text", "v": num(value)}
    if isinstance(value, bool):
        return {"t": "text", "v": "yes" if value else "no"}
    return {"t": "text", "v": "\u2014" if value is None else _short(value, 1000)}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return num(value)
    if isinstance(value, (list, tuple)) and all(_scalar(v) for v in value):
        return ", ".join(_cell(v) for v in value[:12]) + (" \u2026" if len(value) > 12 else "")
    return _short(value, 200)


# --------------------------------------------------------------------------------------------
# Inline SVG charts
























# --------------------------------------------------------------------------------------------
# The view model


def _severity_rank(name: str) -> int:
    try:
        return int(Severity.parse(name))
    except ValueError:
        return 0


def _fail_threshold(gate: Mapping[str, Any]) -> int | None:
    fail_on = str(gate.get("fail_on", "error"))
    if fail_on == "never":
        return None
    rank = _severity_rank(fail_on)
    return rank or None


TRANSFORM_WORDS = {
    "hflip": "mirrored left to right", "vflip": "flipped upside down", "rot180": "turned 180\u00b0",
    "rot90": "turned 90\u00b0 anticlockwise", "rot270": "turned 90\u00b0 clockwise",
    "transpose": "mirrored across the diagonal", "transverse": "mirrored across the other diagonal",
    "crop/zoom": "cropped or zoomed", "shift": "shifted by a few pixels",
    "pad/border": "with a border or padding added or removed",
    "brightness/contrast": "brighter, darker or with another contrast", "resize": "resized",
}


def match_words(pair: Mapping[str, Any]) -> str:
    """How a pair was matched, in words a user can check by eye against the two pictures."""
    kind = str(pair.get("kind", ""))
    if kind == "bytes":
        return "The same file, byte for byte."
    if kind == "pixels":
        return "The same pixels, saved as another file (another format, name or metadata)."
    parts = []
    for token in str(pair.get("transform") or "").split("+"):
        token = token.strip()
        turned = re.fullmatch(r"rotate ([+-]?\d+)deg", token)
        if turned:
            parts.append(f"turned by about {abs(int(turned.group(1)))}\u00b0")
        elif token:
            parts.append(TRANSFORM_WORDS.get(token, token))
    sim = pair.get("similarity")
    score = f" (similarity {num(sim)} once lined up)" if is_num(sim) else ""
    if not parts:
        return f"The right image looks like the left one, re-saved or resized{score}."
    return f"The right image is the left one {', '.join(parts)}{score}."


def _pair_view(pair: Mapping[str, Any], thumbs: _Thumbs | None = None) -> dict[str, Any]:
    """One pair: its two sides (thumbnails filled in later by _fill, under the byte budget), and
    whether their labels conflict (both known and different)."""
    a, b = str(pair.get("a", "")), str(pair.get("b", ""))
    label_a, label_b = pair.get("label_a"), pair.get("label_b")
    conflict = label_a not in (None, "") and label_b not in (None, "") and str(label_a) != str(label_b)
    kind = str(pair.get("kind", ""))
    facts = []
    if kind == "bytes":
        facts.append("identical bytes")
    elif kind == "pixels":
        facts.append("identical pixels")
    elif kind:
        facts.append(f"{kind} duplicate")
    if pair.get("distance") is not None:
        facts.append(f"distance {num(pair['distance'])}")
    if pair.get("similarity") is not None:
        facts.append(f"similarity {num(pair['similarity'])}")
    if pair.get("transform"):
        facts.append(f"transform: {pair['transform']}")

    def side(path: str, split: Any, label: Any) -> dict[str, Any]:
        out = {"path": path, "split": "" if split is None else str(split),
               "label": "" if label is None else str(label), "uri": None, "reason": "no preview"}
        if thumbs is not None:
            out.update(thumbs.get(path))
        return out

    return {"a": side(a, pair.get("split_a"), label_a), "b": side(b, pair.get("split_b"), label_b),
            "conflict": conflict, "facts": ", ".join(facts), "words": match_words(pair),
            "cross": str(pair.get("split_a", "")) != str(pair.get("split_b", ""))}


def _fill(sides: list[dict[str, Any]], thumbs: _Thumbs) -> None:
    for sd in sides:
        sd.update(thumbs.get(sd["path"]))


def _display(f: Finding) -> str:
    """How a finding shows its images, as its check declared (Check.display, stamped into the
    evidence as "display": "pairs" or "images"); a finding without the declaration (a report
    made before it) shows its pairs when it has any, else no images."""
    ev = f.evidence if isinstance(f.evidence, Mapping) else {}
    declared = ev.get("display")
    if "display" in ev:
        return str(declared) if declared in ("pairs", "images") else ""
    return "pairs" if isinstance(ev.get("pairs"), list) and ev["pairs"] else ""


def _finding_view(f: Finding, index: int, thumbs: _Thumbs | None, in_gallery: bool,
                  pairs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    sev = str(f.severity)
    evidence = []
    for key, value in f.evidence.items():
        if key == "display":  # how the report shows the finding, not evidence
            continue
        if key == "pairs" and isinstance(value, list):
            evidence.append((key, f"{len(value):,} pair(s)" + (" (see the gallery)" if in_gallery else "")))
        else:
            evidence.append((str(key), _short(value)))
    paths = list(f.paths)
    shown_thumbs = []
    if thumbs is not None and not in_gallery and not pairs:
        shown_thumbs = [{"path": p, **thumbs.get(p)} for p in paths[:3] if p in thumbs.uris]
    return {
        "index": index, "check_id": f.check_id, "check_name": f.check_name, "severity": sev,
        "rank": int(f.severity), "icon": SEVERITY_ICON.get(sev, ""), "title": f.title,
        "message": f.message, "hint": f.hint, "subject": f.subject, "baselined": f.baselined,
        "paths": paths[:10], "more_paths": max(0, len(paths) - 10), "evidence": evidence,
        "thumbs": shown_thumbs, "pairs": pairs or [], "fingerprint": f.fingerprint, "in_gallery": in_gallery,
        "first_path": paths[0] if paths else f.subject,
    }


def _overview(result: ScanResult) -> dict[str, Any]:
    counts = result.summary.get("counts") or {}
    counts = {str(s): {str(c): int(n) for c, n in (v or {}).items()} for s, v in counts.items()
              if isinstance(v, Mapping)}
    layout_classes = result.layout.get("classes") or {}
    splits = list(counts) or [str(s) for s in result.layout.get("splits") or []]
    classes: list[str] = []
    for split in splits:
        for name in list(layout_classes.get(split, [])) + list(counts.get(split, {})):
            if str(name) not in classes:
                classes.append(str(name))
    classes.sort()
    grid = {s: {c: counts.get(s, {}).get(c, 0) for c in classes} for s in splits}
    totals = {s: sum(grid[s].values()) for s in splits}
    all_images = sum(totals.values()) or 0
    reference = "train" if "train" in splits else (splits[0] if splits else None)
    figures = []
    for s in splits:
        values = list(grid[s].values())
        present = [v for v in values if v > 0]
        ratio = (max(present) / min(values)) if present and min(values) > 0 else (
            math.inf if present else None)
        tvd = None
        if reference and s != reference and totals[s] and totals[reference]:
            tvd = 0.5 * sum(abs(grid[s][c] / totals[s] - grid[reference][c] / totals[reference])
                            for c in classes)
        largest = max(grid[s].items(), key=lambda kv: kv[1]) if classes else ("", 0)
        smallest = min(grid[s].items(), key=lambda kv: kv[1]) if classes else ("", 0)
        figures.append({
            "split": s, "images": totals[s],
            "share": (totals[s] / all_images) if all_images else None,
            "classes": len(present), "missing": len(values) - len(present),
            "largest": largest, "smallest": smallest, "ratio": ratio, "tvd": tvd,
        })
    rows = [{"class": c, "counts": [grid[s][c] for s in splits],
             "shares": [(grid[s][c] / totals[s]) if totals[s] else 0.0 for s in splits],
             "total": sum(grid[s][c] for s in splits)} for c in classes]
    return {
        "splits": splits, "rows": rows[:MAX_TABLE_ROWS], "more_rows": max(0, len(rows) - MAX_TABLE_ROWS),
        "totals": [totals[s] for s in splits], "total": all_images, "figures": figures,
        "reference": reference, "charts": [bar_chart(f"{s}: images per class", grid[s]) for s in splits],
        "n_classes": len(classes),
    }


def _checks_view(result: ScanResult, threshold: int | None) -> list[dict[str, Any]]:
    docs = result.meta.get("checks") or {}
    ran = result.meta.get("checks_run")
    ids = set(docs) | {f.check_id for f in result.findings} | {e.check_id for e in result.check_errors}
    timings = result.meta.get("timings") if isinstance(result.meta.get("timings"), Mapping) else {}
    per_check = timings.get("checks") if isinstance(timings.get("checks"), Mapping) else {}
    by_check: dict[str, list[Finding]] = {}
    for f in result.findings:
        by_check.setdefault(f.check_id, []).append(f)
    rows = []
    for cid in sorted(ids):
        doc = docs.get(cid) if isinstance(docs.get(cid), Mapping) else {}
        mine = by_check.get(cid, [])
        active = [f for f in mine if not f.baselined]
        errors = [e for e in result.check_errors if e.check_id == cid]
        failing = [f for f in active if threshold is not None and int(f.severity) >= threshold]
        by_sev = {s: sum(1 for f in active if str(f.severity) == s) for s in ("error", "warning", "info")}
        if isinstance(ran, list) and cid not in ran and not mine and not errors:
            status, icon = "not run", "\u2013"
        elif errors:
            status, icon = "crashed", "\u26a0"
        elif failing:
            status, icon = "failed", "\u2716"
        elif active:
            status, icon = "findings", "\u25b2"
        elif len(mine):
            status, icon = "baselined", "\u2714"
        else:
            status, icon = "clean", "\u2714"
        name = doc.get("name") or next((f.check_name for f in mine if f.check_name), "") or next(
            (e.check_name for e in errors if e.check_name), "")
        rows.append({"id": cid, "name": name, "summary": doc.get("summary", ""),
                     "why": doc.get("why", ""), "fix": doc.get("fix", ""),
                     "severity": doc.get("severity", ""), "status": status, "icon": icon,
                     "counts": by_sev, "baselined": len(mine) - len(active), "failing": len(failing),
                     "errors": errors, "documented": bool(doc),
                     "seconds": per_check.get(cid) if is_num(per_check.get(cid)) else None})
    return rows


def _context(result: ScanResult, *, json_name: str, max_findings: int, max_pairs: int,
             max_thumbnails: int, max_thumbnail_bytes: int) -> dict[str, Any]:
    gate = dict(result.gate or {})
    threshold = _fail_threshold(gate)
    thumbs = _Thumbs(result.thumbnails or {}, max_thumbnails, max_thumbnail_bytes)
    ordered = sorted(enumerate(result.findings),
                     key=lambda t: (t[1].baselined, -int(t[1].severity), t[1].check_id, t[0]))

    # The gallery: every finding that shows images, every pair of each (paged by the script). The
    # thumbnail budget (bytes) goes round by round: the first pair of every group, then the first
    # pair in every finding card, then the further pairs, so every group shows images before any
    # group shows many.
    gallery, pairs_total, pairs_shown, conflicts = [], 0, 0, 0
    gallery_ids: set[int] = set()
    card_pairs: dict[int, list[dict[str, Any]]] = {}
    rounds: list[list[dict[str, Any]]] = []      # rounds[k]: the sides of the k-th pair of every group
    members_all: list[dict[str, Any]] = []
    for i, f in ordered:
        display = _display(f)
        pairs = f.evidence.get("pairs") if isinstance(f.evidence, Mapping) else None
        valid = [p for p in pairs if isinstance(p, Mapping)] if isinstance(pairs, list) else []
        if display == "pairs" and valid:
            pairs_total += len(valid)
            room = max(0, min(MAX_PAIRS_PER_FINDING, max_pairs - pairs_shown))
            views = [_pair_view(p) for p in valid[:room]]
            pairs_shown += len(views)
            conflicts += sum(1 for v in views if v["conflict"])
            for k, v in enumerate(views):
                while len(rounds) <= k:
                    rounds.append([])
                rounds[k] += [v["a"], v["b"]]
            card_pairs[i] = [_pair_view(p) for p in valid[:CARD_PAIRS]]
            gallery.append({"finding": i, "check_id": f.check_id, "check_name": f.check_name,
                            "severity": str(f.severity), "icon": SEVERITY_ICON.get(str(f.severity), ""),
                            "title": f.title, "pairs": views, "more": len(valid) - len(views),
                            "members": [], "baselined": f.baselined})
            gallery_ids.add(i)
        elif display == "images" and len(f.paths) >= 2:
            members = [{"path": p, "uri": None, "reason": "no preview"} for p in f.paths[:MAX_CLUSTER_MEMBERS]] \
                if pairs_shown < max_pairs else []
            pairs_shown += 1 if members else 0
            members_all += members
            gallery.append({"finding": i, "check_id": f.check_id, "check_name": f.check_name,
                            "severity": str(f.severity), "icon": SEVERITY_ICON.get(str(f.severity), ""),
                            "title": f.title, "pairs": [], "members": members,
                            "more": len(f.paths) - len(members), "baselined": f.baselined})
            gallery_ids.add(i)
    shown_cards = {i for i, _ in ordered[:max_findings]}
    _fill(rounds[0] if rounds else [], thumbs)
    _fill([sd for i, views in card_pairs.items() if i in shown_cards for v in views for sd in (v["a"], v["b"])],
          thumbs)
    for sides in rounds[1:]:
        _fill(sides, thumbs)
    _fill(members_all, thumbs)
    for n, g in enumerate(gallery):
        g["page"] = n // GALLERY_PAGE
        g["lazy"] = n >= GALLERY_PAGE   # later pages load their images when shown or scrolled to

    cards = [_finding_view(f, i, thumbs, i in gallery_ids, card_pairs.get(i)) for i, f in ordered[:max_findings]]
    for n, card in enumerate(cards):
        card["lazy"] = n >= EAGER_CARDS  # images of cards far down the page load as they are scrolled to
    hidden = ordered[max_findings:]
    hidden_by_check: dict[str, int] = {}
    for _, f in hidden:
        hidden_by_check[f.check_id] = hidden_by_check.get(f.check_id, 0) + 1

    counts = gate.get("counts") or result.counts_by_severity()
    passed = gate.get("passed")
    verdict = {
        "state": "unknown" if passed is None else ("passed" if passed else "failed"),
        "fail_on": gate.get("fail_on", "error"), "exit_code": gate.get("exit_code"),
        "counts": [(s, SEVERITY_ICON[s], int(counts.get(s, 0))) for s in ("error", "warning", "info")],
        "baselined": gate.get("baselined", sum(1 for f in result.findings if f.baselined)),
        "check_errors": gate.get("check_errors", len(result.check_errors)),
    }
    caps = []
    if hidden:
        caps.append(f"{len(cards):,} of {len(result.findings):,} findings are shown in full; "
                    f"the other {len(hidden):,} are counted per check below.")
    if pairs_total > pairs_shown:
        caps.append(f"The gallery shows {pairs_shown:,} of {pairs_total:,} duplicate pairs.")
    if thumbs.capped:
        caps.append(f"{thumbs.capped:,} thumbnails were left out to keep this file within "
                    f"{max_thumbnail_bytes / 1e6:.1f} MB of images (every group got its first pair first).")
    sections = dict(result.sections or {})
    extra = {k: _node(v) for k, v in sections.items()
             if k not in ("balance", "batching", "leakage", "probe", "content")}
    content = content_view(result, lambda p: {"path": p, **thumbs.get(p)} if p in thumbs.uris else None)
    meta = dict(result.meta or {})
    timings = meta.get("timings") if isinstance(meta.get("timings"), Mapping) else {}
    return {
        "r": result, "root": result.root, "verdict": verdict, "overview": _overview(result),
        "summary": result.summary, "layout": result.layout,
        "checks": _checks_view(result, threshold), "cards": cards, "n_findings": len(result.findings),
        "hidden_by_check": sorted(hidden_by_check.items()), "gallery": gallery,
        "gallery_pages": -(-len(gallery) // GALLERY_PAGE) if gallery else 0, "page_size": GALLERY_PAGE,
        "pairs_total": pairs_total, "conflicts": conflicts, "caps": caps, "json_name": json_name,
        "check_ids": sorted({f.check_id for f in result.findings}),
        "balance": _node(sections["balance"]) if "balance" in sections else None,
        "batching": _node(sections["batching"]) if "batching" in sections else None,
        "leakage": _node(sections["leakage"]) if "leakage" in sections else None,
        "probe": _node(sections["probe"]) if "probe" in sections else None,
        "probe_charts": probe_charts(sections.get("probe")),
        "probe_status": probe_status(sections.get("probe")),
        "probe_ab": isinstance(sections.get("probe"), Mapping) and any(
            isinstance(sections["probe"].get(k), Mapping) and sections["probe"][k].get("status") == "ran"
            for k in ("leakage", "group_leakage")),
        "extra_sections": extra, "meta": meta, "content": content,
        "content_details": _node(sections["content"]) if "content" in sections else None,
        "timings": [(str(k), num(v) if isinstance(v, (int, float)) else _short(v))
                    for k, v in timings.items() if not (k == "checks" and isinstance(v, Mapping))],
        "config_json": json.dumps(result.config, indent=2, sort_keys=True, default=str,
                                  ensure_ascii=False),
        "version": result.dsaudit_version or meta.get("dsaudit_version", ""),
        "check_errors": result.check_errors,
    }


def _script() -> tuple[Markup, Markup]:
    source = _environment().loader.get_source(_environment(), "report.js")[0]  # type: ignore[union-attr]
    digest = base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")
    return Markup(source), Markup(f"'sha256-{digest}'")


def render(result: ScanResult, *, json_name: str = "report.json", max_findings: int = MAX_FINDINGS,
           max_pairs: int = MAX_PAIRS, max_thumbnails: int = MAX_THUMBNAILS,
           max_thumbnail_bytes: int = MAX_THUMBNAIL_BYTES, max_bytes: int = MAX_BYTES) -> str:
    """The report as one HTML string. Caps are halved until the page fits in `max_bytes`."""
    env = _environment()
    template = env.get_template("report.html.j2")
    script, script_hash = _script()
    css = Markup(env.loader.get_source(env, "report.css")[0])  # type: ignore[union-attr]
    while True:
        ctx = _context(result, json_name=json_name, max_findings=max_findings, max_pairs=max_pairs,
                       max_thumbnails=max_thumbnails, max_thumbnail_bytes=max_thumbnail_bytes)
        page = clean_text(template.render(**ctx, script=script, script_hash=script_hash, css=css))
        if len(page.encode("utf-8")) <= max_bytes or (max_findings <= 10 and max_thumbnails <= 0):
            return page
        if max_pairs > 1000 or max_thumbnail_bytes > 2_000_000:  # the gallery gives way before the cards
            max_pairs = max(5, max_pairs // 2)
            max_thumbnail_bytes //= 2
            continue
        max_findings = max(10, max_findings // 2)
        max_pairs = max(5, max_pairs // 2)
        max_thumbnails //= 2
        max_thumbnail_bytes //= 2


def write(result: ScanResult, path: str | Path, **options: Any) -> Path:
    """Render the report and write it to `path` (UTF-8). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(result, **options), encoding="utf-8")
    return path


__all__ = ["render", "write", "clean_text"]
