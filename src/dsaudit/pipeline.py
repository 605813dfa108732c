"""scan(): discover the layout, build the index once, compute the analyses the selected checks
declare, run the checks, judge the findings, and make the thumbnails the HTML report will show.

A check that raises becomes a recorded CheckError; the scan always completes. Nothing here writes
anything except the record cache (outside the dataset); reports are written by the caller.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from dsaudit import __version__
from dsaudit.analysis import Analysis, closure, plan
from dsaudit.checks.base import CheckContext
from dsaudit.checks.registry import check_severity_keys, select_checks
from dsaudit.config import AuditConfig
from dsaudit.findings import CheckError, Finding, ScanResult
from dsaudit.index.build import ProgressFactory, build_index
from dsaudit.index.heap import release_free_memory
from dsaudit.index.dataset import DatasetIndex
from dsaudit.index.layout import DatasetError, Layout, discover, display_path
from dsaudit.index.thumbnails import make_thumbnails
from dsaudit.option_notes import option_notes
from dsaudit import policy
from dsaudit.render.gallery import thumbnail_order


def build(root: Path | None, config: AuditConfig, manifest: Path | None = None,
          progress: ProgressFactory | None = None, layout: Layout | None = None) -> DatasetIndex:
    """Discover the layout (unless one is given: loader objects, see loaders/objects.py) and build
    the index (no checks)."""
    if layout is None:
        layout = discover(root if root is not None else manifest.parent, manifest,  # type: ignore[union-attr]
                          chosen=config.chosen_splits() or None)
    index = build_index(layout, config, progress=progress)
    release_free_memory()   # the records are gone: their heap pages back to the system (index/heap.py)
    require_images(index)
    if config.batch.keras_split:  # the loader's own file listing and seeded split, from the folder names
        from dsaudit.loaders.keras import simulate

        index.loader_split = simulate(layout, config.batch.keras_split, config.seed)
    return index


def require_images(index: DatasetIndex) -> None:
    """A root whose files are all non-images (notes, CSVs, system files) is not a dataset: exit 2
    (DatasetError), not a passing gate with 0 images. Broken, empty or unreadable image files still
    make a dataset: each is a finding."""
    t = index.table
    if len(t) and (t["kind"] == "non-image").all():
        examples = ", ".join(t["path"].head(3))
        raise DatasetError(f"no images in {display_path(str(index.root))}: {len(t)} file(s) found, none of "
                           f"them an image (e.g. {examples})")


def run_analyses(kinds: list[type[Analysis]], index: DatasetIndex, config: AuditConfig,
                 status: Callable[[str], None] | None = None, notify: Callable[[str], None] | None = None
                 ) -> tuple[dict[type, Analysis], dict[type, CheckError], dict[str, float]]:
    """Compute `kinds` (in dependency order, as analysis.plan gives them), each once and timed. A
    failing analysis is recorded, as is every analysis that needs it; the scan goes on."""
    results: dict[type, Analysis] = {}
    failed: dict[type, CheckError] = {}
    timings: dict[str, float] = {}
    for kind in kinds:
        broken = next((failed[dep] for dep in kind.requires if dep in failed), None)
        if broken is not None:
            failed[kind] = broken
            continue
        if status:
            status(f"analysis: {kind.name}")
        t0 = time.perf_counter()
        try:
            results[kind] = kind.compute(index, config, {dep: results[dep] for dep in closure(kind.requires)},
                                         notify)
        except Exception as exc:  # a crashing analysis fails the checks that need it, not the scan
            failed[kind] = CheckError("", kind.name, f"the {kind.name} analysis failed: {type(exc).__name__}: {exc}",
                                      traceback.format_exc(limit=8))
        timings[kind.name] = round(time.perf_counter() - t0, 4)
    return results, failed, timings


def run_checks(index: DatasetIndex, config: AuditConfig, status: Callable[[str], None] | None = None,
               notify: Callable[[str], None] | None = None
               ) -> tuple[list[Finding], list[CheckError], CheckContext, dict[str, float]]:
    """Run the selected checks after the analyses they require. Returns the findings, the check
    errors, the shared context (its `sections` go into the report, `timings` holds the analyses'
    stage times) and each check's own time."""
    checks = select_checks(config.select, config.ignore)
    ctx = CheckContext(index=index, config=config, notify=notify)
    results, failed, ctx.timings = run_analyses(plan(checks), index, config, status, notify)
    ctx.results = results   # the scan's context holds every analysis; each check gets its own below
    for kind, res in results.items():
        block = res.report_section()
        if kind.section and block is not None:
            ctx.sections[kind.section] = block
        notes = res.report_statements()
        if notes:  # what the analysis decided not to measure, stated rather than left to silence
            ctx.sections.setdefault("statements", []).extend(notes)
    findings: list[Finding] = []
    errors: list[CheckError] = []
    timings: dict[str, float] = {}
    for check_cls in checks:
        needs = closure(check_cls.requires)
        broken = next((failed[k] for k in needs if k in failed), None)
        if broken is not None:
            errors.append(CheckError(check_cls.id, check_cls.name, broken.error, broken.traceback))
            timings[check_cls.id] = 0.0
            continue
        t0 = time.perf_counter()
        if status:
            status(f"{check_cls.id} {check_cls.name}")
        try:  # each check sees the analyses it declared, and no others
            findings.extend(check_cls().run(dataclasses.replace(ctx, results={k: results[k] for k in needs})))
        except Exception as exc:  # a crashing check is a result, not a crashed scan
            errors.append(CheckError(check_cls.id, check_cls.name, f"{type(exc).__name__}: {exc}",
                                     traceback.format_exc(limit=8)))
        timings[check_cls.id] = round(time.perf_counter() - t0, 4)
    return findings, errors, ctx, timings


def summarize(index: DatasetIndex, duration: float) -> dict[str, Any]:
    t = index.table
    counts: dict[str, dict[str, int]] = {}
    for split in index.layout.splits:
        key = split or "all"
        labels = sorted(set(index.layout.classes.get(split, [])) | set(t.loc[t["split"] == split, "label"]))
        sub = t[(t["split"] == split) & (t["kind"] == "image")]  # what a loader would train on
        counts[key] = {label: int((sub["label"] == label).sum()) for label in labels}
    return {
        "files": int(len(t)),
        "images": int((t["kind"] == "image").sum()),
        "decoded": int(t["readable"].sum()),
        "unreadable": int((~t["readable"] & ~t["bomb"]).sum()),
        "bytes": int(t["bytes"].sum()),
        "counts": counts,
        "formats": {str(k): int(v) for k, v in t["format"].replace("", "unknown").value_counts().items()},
        "modes": {str(k): int(v) for k, v in t.loc[t["readable"], "mode"].value_counts().items()},
        "duration_seconds": round(duration, 3),
        "cache": {"hits": int(index.stats.get("cache_hits", 0)),
                  "misses": int(index.stats.get("decoded", 0))},
    }


def check_docs() -> dict[str, dict[str, str]]:
    """What the renderers may know of each check: its words, and how it is shown (Check.family)."""
    from dsaudit.checks.registry import all_checks

    return {c.id: {"name": c.name, "summary": c.summary(), "why": c.why(), "fix": c.fix(),
                   "severity": str(c.severity), "family": c.family} for c in all_checks()}


def scan(root: Path | None, config: AuditConfig, manifest: Path | None = None, *,
         baseline: Path | None = None, command: str = "", thumbnails: bool = False,
         progress: ProgressFactory | None = None,
         status: Callable[[str], None] | None = None,
         notify: Callable[[str], None] | None = None, layout: Layout | None = None) -> ScanResult:
    """Run a whole audit and return its result. Raises DatasetError for an unusable root. A given
    `layout` (from loader objects) replaces the discovery of ROOT or the manifest. A severity
    override naming no check is a ConfigError (config does not import the registry)."""
    check_severity_keys(config)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    accepted = policy.load_baseline(baseline) if baseline else {}
    index = build(root, config, manifest, progress=progress, layout=layout)
    for note in index.notes:
        if notify is not None:
            notify(note)
    findings, errors, ctx, check_timings = run_checks(index, config, status, notify)
    notes = list(index.notes) + option_notes(ctx)
    for note in notes[len(index.notes):]:
        if notify is not None:
            notify(note)
    findings = policy.apply_overrides(findings, config.severity)
    findings = policy.apply_baseline(findings, accepted)
    findings.sort(key=lambda f: (-int(f.severity), f.check_id, f.key))
    gate = policy.gate(findings, errors, config.fail_on)
    thumbs: dict[str, str] = {}
    if thumbnails:
        t_thumb = time.perf_counter()
        thumbs = make_thumbnails(index, thumbnail_order(findings), config.thumbnails, config.resolved_jobs(),
                                 config.thumbnail_bytes)
        index.timings["thumbnails"] = time.perf_counter() - t_thumb
    duration = time.perf_counter() - t0
    timings = {k: round(v, 4) for k, v in index.timings.items()}
    timings.update({f"analysis.{name}": t for name, t in ctx.timings.items()})   # stages of their own
    timings["checks"] = check_timings
    return ScanResult(
        root=display_path(str(index.root)),
        layout=index.layout.to_dict(),
        summary=summarize(index, duration),
        findings=findings,
        check_errors=errors,
        config=config.to_dict(),
        gate=gate,
        sections=ctx.sections,
        meta={"command": command, "started": started.isoformat(timespec="seconds"),
              "duration_seconds": round(duration, 3), "fingerprint": index.fingerprint,
              "timings": timings, "jobs": config.resolved_jobs(), "checks": check_docs(),
              "checks_run": list(check_timings), "dsaudit_version": __version__, "notes": notes},
        dsaudit_version=__version__,
        thumbnails=thumbs,
    )
