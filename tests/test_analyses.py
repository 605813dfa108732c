"""Analyses that checks declare: computed once by the pipeline, timed as their own stage, and given
to any selection of checks, so that `--select X` reports what a full scan reports for X."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from dsaudit.config import AuditConfig, ProbeConfig
from dsaudit.pipeline import scan
from imagery import real_patches, write_image


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """train/a: 10 photos saved 4 times each (40 files, 10 distinct: DSA105 and DSA204), train/b: 40
    distinct photos, and val/a: copies of two train/a photos (DSA201, the probe's leaked pairs)."""
    root = tmp_path_factory.mktemp("copied")
    patches = real_patches(52, size=32, seed=3)
    for i in range(10):
        first = write_image(root / "train" / "a" / f"a{i:02d}_0.png", patches[i])
        for k in (1, 2, 3):
            shutil.copyfile(first, root / "train" / "a" / f"a{i:02d}_{k}.png")
    for i in range(40):
        write_image(root / "train" / "b" / f"b{i:02d}.png", patches[10 + i])
    (root / "val" / "a").mkdir(parents=True)
    for i in range(2):
        shutil.copyfile(root / "train" / "a" / f"a{i:02d}_0.png", root / "val" / "a" / f"v{i}.png")
    write_image(root / "val" / "b" / "vb.png", patches[50])
    return root


def _scan(root, select=()):
    cfg = AuditConfig(jobs=1, cache=False, select=tuple(select), probe=ProbeConfig(mode="off"))
    return scan(root, cfg)


def _of(result, check_id):
    return [f.to_dict() for f in result.findings if f.check_id == check_id]


@pytest.fixture(scope="module")
def full(copied):
    return _scan(copied)


@pytest.mark.parametrize("check_id", ["DSA105", "DSA201", "DSA204"])
def test_a_selected_check_reports_what_the_full_scan_reports(copied, full, check_id):
    assert _of(full, check_id), f"the dataset should trigger {check_id}"
    alone = _scan(copied, [check_id])
    assert alone.check_errors == []
    assert _of(alone, check_id) == _of(full, check_id)


def test_the_probe_alone_sees_the_leaked_pairs(copied, full):
    alone = _scan(copied, ["DSA9*"])
    assert full.sections["probe"]["cross_split_pairs"] > 0
    assert alone.sections["probe"] == full.sections["probe"]


def test_an_analysis_runs_once_and_is_timed_as_its_own_stage(copied, full, monkeypatch):
    from dsaudit.similarity import duplicates

    calls = []
    real = duplicates.Duplicates.compute.__func__

    def counted(cls, *args, **kwargs):
        calls.append(cls)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(duplicates.Duplicates, "compute", classmethod(counted))
    result = _scan(copied)
    assert len(calls) == 1
    assert result.meta["timings"]["analysis.duplicates"] >= 0
    assert set(result.meta["timings"]["checks"]) == set(result.meta["checks_run"])
    # checks not needing the duplicates do not get them computed
    _scan(copied, ["DSA101"])
    assert len(calls) == 1


def test_a_failing_analysis_fails_each_check_that_needs_it_and_the_scan_goes_on(copied, monkeypatch):
    from dsaudit.similarity import duplicates

    def broken(cls, *args, **kwargs):
        raise RuntimeError("matcher exploded")

    monkeypatch.setattr(duplicates.Duplicates, "compute", classmethod(broken))
    result = _scan(copied, ["DSA2*", "DSA105", "DSA101"])
    failed = {e.check_id: e.error for e in result.check_errors}
    assert set(failed) == {"DSA201", "DSA202", "DSA203", "DSA204", "DSA105"}
    assert all("duplicates" in m and "matcher exploded" in m for m in failed.values())
    assert _of(result, "DSA101") or "DSA101" in result.meta["checks_run"]
    assert result.gate["passed"] is False


def test_a_check_reading_an_analysis_it_did_not_declare_is_told_so(copied):
    from dsaudit.checks.base import Check, CheckContext
    from dsaudit.pipeline import build
    from dsaudit.similarity.duplicates import Duplicates

    class Sloppy(Check):
        """Reads the duplicates without declaring them."""
        id, name = "DSA999", "test.sloppy"

        def run(self, ctx):
            return [ctx.result(Duplicates)]

    cfg = AuditConfig(jobs=1, cache=False)
    ctx = CheckContext(index=build(copied, cfg), config=cfg)
    with pytest.raises(LookupError, match="requires"):
        Sloppy().run(ctx)


def test_declared_analyses_resolve_in_dependency_order():
    from dsaudit.analysis import plan
    from dsaudit.checks.registry import all_checks
    from dsaudit.similarity.duplicates import Duplicates

    order = plan(all_checks())
    assert order[0] is Duplicates
    for i, kind in enumerate(order):
        assert all(order.index(dep) < i for dep in kind.requires)
    assert dataclasses.is_dataclass(Duplicates)
