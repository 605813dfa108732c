"""On-disk cache of per-file records, so that rescanning an unchanged dataset decodes nothing.

One SQLite file per dataset root, in the user's cache folder (never inside the dataset):
``$DSAUDIT_CACHE_DIR``, else ``--cache-dir``, else ``$XDG_CACHE_HOME/dsaudit`` or ``~/.cache/dsaudit``.
A record is reused only when the file's path, size and mtime (ns) are unchanged and it was made by the
same record and feature versions with the same pixel limit; anything else is decoded again.
Records are pickled (they hold small numpy arrays); the cache is the user's own data, written and read
only by dsaudit.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
from pathlib import Path
from typing import Any, Iterable

SCHEMA = 1


def default_cache_dir(configured: str = "") -> Path:
    env = os.environ.get("DSAUDIT_CACHE_DIR")
    if env:
        return Path(env)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dsaudit"


class RecordCache:
    """Records keyed by relative path, validated by (size, mtime_ns) and a version tag."""

    def __init__(self, folder: Path, root_key: str, version: str):
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(root_key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
        self.path = folder / f"{name}.sqlite"
        self.version = version
        self.conn = sqlite3.connect(self.path, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.conn.execute("CREATE TABLE IF NOT EXISTS records (path TEXT PRIMARY KEY, size INTEGER, "
                          "mtime_ns INTEGER, version TEXT, record BLOB)")
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('root', ?)",
                          (root_key.encode("utf-8", "backslashreplace").decode("utf-8"),))
        self.conn.commit()

    def lookup(self, keys: Iterable[tuple[str, int, int]]) -> dict[str, dict[str, Any]]:
        """Return the cached records that are still valid for the given (path, size, mtime_ns)."""
        wanted = {p: (s, m) for p, s, m in keys}
        hits: dict[str, dict[str, Any]] = {}
        cursor = self.conn.execute("SELECT path, size, mtime_ns, version, record FROM records")
        for path, size, mtime_ns, version, blob in cursor:
            expect = wanted.get(path)
            if expect is None or expect != (size, mtime_ns) or version != self.version:
                continue
            try:
                hits[path] = pickle.loads(blob)
            except Exception:  # a damaged row is just a miss
                continue
        return hits

    def store(self, rows: Iterable[tuple[str, int, int, dict[str, Any]]]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)",
            ((p, s, m, self.version, pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL))
             for p, s, m, r in rows))
        self.conn.commit()

    def prune(self, keep: Iterable[str]) -> None:
        """Forget files that no longer exist in the dataset."""
        keep = set(keep)
        stale = [(p,) for (p,) in self.conn.execute("SELECT path FROM records") if p not in keep]
        if stale:
            self.conn.executemany("DELETE FROM records WHERE path = ?", stale)
            self.conn.commit()

    def close(self) -> None:
        self.conn.close()
