"""What the record cache trusts, and what it must never hide: a file rewritten at the same size and
mtime, a file made unreadable, a cache written by an older schema, a damaged cache file, a
read-only cache folder. Each scan on a warm cache must give the findings a --no-cache scan gives."""

import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dsaudit.config import AuditConfig
from dsaudit.pipeline import scan
from imagery import real_patches, write_image

CFG = AuditConfig(jobs=1)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def findings_of(result):
    return sorted((f.check_id, tuple(f.paths), f.title) for f in result.findings)


def cache_files(folder):
    return sorted(p for p in Path(folder).glob("*.sqlite"))


def bmp_dataset(root: Path) -> dict[str, Path]:
    """Uncompressed BMPs of one size: every file has exactly the same byte count, as CIFAR's
    whole-second mtimes and equal sizes make a same-size overwrite easy to miss."""
    patches = real_patches(8, size=32, seed=3)
    paths = {}
    for i, (split, label) in enumerate([("train", "a")] * 3 + [("train", "b")] * 3 + [("val", "a"), ("val", "b")]):
        paths[f"{split}/{label}/{i}"] = write_image(root / split / label / f"img{i}.bmp", patches[i])
    return paths


def test_a_same_size_overwrite_at_the_same_mtime_is_decoded_again(tmp_path):
    root = tmp_path / "d"
    paths = bmp_dataset(root)
    first = scan(root, CFG)
    assert not [f for f in first.findings if f.check_id.startswith("DSA20")]
    victim, source = paths["train/a/0"], paths["val/a/6"]
    st = victim.stat()
    assert source.stat().st_size == st.st_size
    victim.write_bytes(source.read_bytes())          # the same file in train and val now
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -r: size and mtime as before
    assert (victim.stat().st_size, victim.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    warm = scan(root, CFG)
    cold = scan(root, dataclasses.replace(CFG, cache=False))
    assert any(f.check_id == "DSA201" for f in cold.findings)
    assert warm.summary["cache"]["misses"] >= 1
    assert findings_of(warm) == findings_of(cold)


def test_a_cache_of_the_old_schema_is_not_read(tmp_path, monkeypatch):
    """A schema-1 file (path, size, mtime_ns, version, record) whose rows would match: ignored."""
    import pickle

    from dsaudit.index import hashing
    from dsaudit.index.records import RECORD_VERSION

    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("DSAUDIT_CACHE_DIR", str(cache_dir))
    root = tmp_path / "d"
    paths = bmp_dataset(root)
    scan(root, CFG)
    [db] = cache_files(cache_dir)
    db.unlink()
    for extra in cache_dir.glob("*.sqlite-*"):
        extra.unlink()
    shutil.rmtree(cache_dir / "memo", ignore_errors=True)
    for p in cache_dir.glob("*.pkl"):
        p.unlink()
    version = f"{RECORD_VERSION}.{hashing.FEATURES_VERSION}.{CFG.integrity.max_pixels}"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("CREATE TABLE records (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                 "version TEXT, record BLOB)")
    fake = {"kind": "empty", "format": "", "width": 0, "height": 0, "mode": "", "channels": 0,
            "readable": False, "truncated": False, "bomb": False, "sha256": "0" * 64, "features": None,
            "error": "file is empty (0 bytes)"}
    for rel in ("train/a/img0.bmp",):
        st = (root / rel).stat()
        conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?)",
                     (rel, st.st_size, st.st_mtime_ns, version, pickle.dumps(fake)))
    conn.commit()
    conn.close()
    result = scan(root, CFG)
    assert result.summary["cache"]["hits"] == 0
    assert findings_of(result) == findings_of(scan(root, dataclasses.replace(CFG, cache=False)))
    assert not paths["train/a/0"].stat().st_size == 0


def _as_unprivileged(argv):
    """Root reads a chmod 000 file anyway. In a new user namespace without a uid mapping, root
    keeps its uid but loses the capability to override permissions: the mode bits apply, as they do
    for the unprivileged user who runs a training job."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--user", "true"]).returncode != 0:
        pytest.skip("running as root without user namespaces: a chmod 000 file stays readable")
    return ["unshare", "--user", *argv]


def _run_cli(args, env):
    return subprocess.run(_as_unprivileged([sys.executable, "-m", "dsaudit.cli", *map(str, args)]), env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_file_made_unreadable_is_reported_on_a_warm_cache(tmp_path):
    """chmod 000 after a scan: the rescan must report it as a cold scan does (a cached record used
    to hide it)."""
    root = tmp_path / "d"
    paths = bmp_dataset(root)
    env = {**os.environ, "PYTHONPATH": SRC, "DSAUDIT_CACHE_DIR": str(tmp_path / "cache"), "CI": "1"}
    common = [root, "-f", "json", "--fail-on", "never", "-j", "1", "-q", "--no-probe"]
    first = _run_cli(["scan", *common, "-o", tmp_path / "o1"], env)
    assert first.returncode == 0, first.stderr
    victim = paths["train/b/3"]
    victim.chmod(0)
    warm = _run_cli(["scan", *common, "-o", tmp_path / "o2"], env)
    cold = _run_cli(["scan", *common, "-o", tmp_path / "o3", "--no-cache"], env)
    assert warm.returncode == 0 and cold.returncode == 0, warm.stderr + cold.stderr

    def report(name):
        doc = json.loads((tmp_path / name / "report.json").read_text())
        return doc, sorted((f["check_id"], tuple(f["paths"])) for f in doc["findings"])

    warm_doc, warm_findings = report("o2")
    _, cold_findings = report("o3")
    assert any("train/b/img3.bmp" in paths and cid == "DSA001" for cid, paths in cold_findings)
    assert warm_findings == cold_findings
    assert warm_doc["summary"]["cache"]["hits"] == 7


def _damage(db: Path, offsets) -> None:
    with open(db, "r+b") as fh:
        for off in offsets:
            fh.seek(off)
            fh.write(os.urandom(512))


def test_a_damaged_cache_file_is_reported_moved_aside_and_rebuilt(tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("DSAUDIT_CACHE_DIR", str(cache_dir))
    root = tmp_path / "d"
    bmp_dataset(root)
    scan(root, CFG)
    [db] = cache_files(cache_dir)
    db.write_bytes(b"this is not a database" * 100)   # the header and first page gone
    notes = []
    second = scan(root, CFG, notify=notes.append)
    damaged = [n for n in notes if "damaged" in n]
    assert len(damaged) == 1 and "moved it aside" in damaged[0], notes
    assert [p.name for p in cache_dir.glob("*.damaged")] == [db.name + ".damaged"]
    assert findings_of(second) == findings_of(scan(root, dataclasses.replace(CFG, cache=False)))
    notes.clear()
    third = scan(root, CFG, notify=notes.append)
    assert third.summary["cache"] == {"hits": 8, "misses": 0} and not notes  # rebuilt and used again


def test_damaged_pages_inside_the_cache_never_change_findings(tmp_path, monkeypatch):
    """Random bytes over pages in the middle of the file: either SQLite sees it (moved aside), or
    a row's digest does (that row is decoded again); the findings never change."""
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("DSAUDIT_CACHE_DIR", str(cache_dir))
    root = tmp_path / "d"
    bmp_dataset(root)
    reference = findings_of(scan(root, dataclasses.replace(CFG, cache=False)))
    rng = np.random.default_rng(5)
    for _ in range(6):
        scan(root, CFG)
        [db] = cache_files(cache_dir)
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        size = db.stat().st_size
        _damage(db, rng.integers(512, max(size - 512, 513), size=2))
        notes = []
        result = scan(root, CFG, notify=notes.append)
        assert findings_of(result) == reference
        assert len(notes) <= 1


def test_a_read_only_cache_folder_is_one_note_and_the_scan_runs(tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    cache_dir.chmod(0o555)
    monkeypatch.setenv("DSAUDIT_CACHE_DIR", str(cache_dir))
    root = tmp_path / "d"
    bmp_dataset(root)
    notes = []
    result = scan(root, CFG, notify=notes.append)
    assert result.summary["images"] == 8
    assert len(notes) == 1 and "read-only" in notes[0] and "without a cache" in notes[0], notes
    assert list(cache_dir.iterdir()) == []


def test_a_cache_folder_that_cannot_be_made_is_one_note(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("DSAUDIT_CACHE_DIR", str(blocker / "cache"))
    root = tmp_path / "d"
    bmp_dataset(root)
    notes = []
    assert scan(root, CFG, notify=notes.append).summary["images"] == 8
    assert len(notes) == 1 and "without a cache" in notes[0], notes
