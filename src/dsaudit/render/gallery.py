"""Which images the HTML report shows, in which order: the renderer's choice, made from the findings
alone, so that the scan makes thumbnails for exactly what the report will show (pipeline.scan passes
this order to index/thumbnails.py, which reads the files)."""

from __future__ import annotations

from dsaudit.findings import Finding

PATHS_PER_FINDING = 12   # images of a finding without pairs that get a thumbnail


def thumbnail_order(findings: list[Finding]) -> list[str]:
    """Paths in the order the HTML report shows them: the first pair of every finding that shows
    pairs, then every second pair, and so on (so every group gets its images before any group gets
    many), then the images of image findings, then other findings' paths. Findings of higher
    severity come first at every step."""
    wanted: dict[str, None] = {}
    ordered = sorted(findings, key=lambda f: -int(f.severity))
    pair_lists = [[p for p in f.evidence.get("pairs") or [] if isinstance(p, dict)]
                  for f in ordered if isinstance(f.evidence, dict)]
    for k in range(max((len(p) for p in pair_lists), default=0)):
        for pairs in pair_lists:
            if k < len(pairs):
                for p in (pairs[k].get("a"), pairs[k].get("b")):
                    if p:
                        wanted.setdefault(str(p), None)
    for f in ordered:
        for p in f.paths[:PATHS_PER_FINDING]:
            wanted.setdefault(p, None)
    return list(wanted)
