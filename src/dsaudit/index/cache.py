"""On-disk cache of per-file records, so that rescanning an unchanged dataset decodes nothing.

One SQLite file per dataset root, in the user's cache folder (never inside the dataset):
``$DSAUDIT_CACHE_DIR``, else ``--cache-dir``, else ``$XDG_CACHE_HOME/dsaudit`` or ``~/.cache/dsaudit``.

What the cache trusts: a record is reused only when the file's path, size, mtime (ns), inode,
ctime (ns) and device are all unchanged, and it was made by the same record and feature versions
with the same pixel limit. The mtime alone is not enough: CIFAR-style datasets give every file the
same whole-second mtime and a same-size overwrite put back with `touch -r` keeps size and mtime.
The ctime cannot be set back from user space, and any write, chmod, chown or rename moves it, so a
file rewritten in place, swapped for a copy (new inode) or made unreadable is decoded again. What it
cannot see: a change made with the clock set back, or by writing the disk under the filesystem.
Remote objects are keyed by size and ETag (index/remote.py). Use --no-cache to trust nothing.

Damage is never silent. Each row carries a digest of its key and record, so a damaged page gives a
miss (decoded again, row rewritten), never a wrong record; a file SQLite cannot read is moved aside
to ``<name>.damaged`` with one note and rebuilt; a read-only cache folder is one note and the scan
runs without a cache. Records are pickled (they hold small numpy arrays); the cache is the user's
own data, written and read only by dsaudit.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import stat
from pathlib import Path
from typing import Any, Iterable

# 2: the key gained inode, ctime and device, and rows a digest; a schema-1 table is dropped
SCHEMA = 2


def default_cache_dir(configured: str = "") -> Path:
    env = os.environ.get("DSAUDIT_CACHE_DIR")
    if env:
        return Path(env)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dsaudit"


class CacheUnavailable(Exception):
    """The cache folder cannot be used; the message is the one-line note for the user."""


def stamp_text(stamp: tuple) -> str:
    """The cache key of one file version (io.Stamp, or a remote (size, ETag stamp))."""
    return ":".join(map(str, map(int, stamp)))


def _digest(path: str, stamp: str, version: str, blob: bytes) -> bytes:
    """blake2b-128 of path, stamp and version (each followed by a NUL byte) and the record."""
    head = b"%s\0%s\0%s\0" % (path.encode("utf-8", "surrogateescape"), stamp.encode(), version.encode())
    return hashlib.blake2b(head + blob, digest_size=16).digest()


def encode_record(record: dict[str, Any]) -> bytes:
    """A record as the cache stores it (records.analyse_file_pickled makes the same bytes in the
    worker, so that the scanning process does not pickle every record a second time)."""
    return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)


def _shown(path: Path) -> str:
    from dsaudit.index.layout import display_path

    return display_path(str(path))


def usable_folder(folder: Path) -> Path:
    """Make the cache folder, or raise CacheUnavailable when it cannot be made or written. Write
    permission is read from the mode bits (root would write into a folder made read-only)."""
    from dsaudit.safe_write import may_write

    try:
        folder.mkdir(parents=True, exist_ok=True)
        st = os.stat(folder)
    except OSError as exc:
        raise CacheUnavailable(f"cannot use the cache folder {_shown(folder)} ({exc.strerror or exc}); "
                               "scanning without a cache") from None
    if not stat.S_ISDIR(st.st_mode) or not may_write(st) or not os.access(folder, os.W_OK | os.X_OK):
        raise CacheUnavailable(f"the cache folder {_shown(folder)} is read-only; scanning without a cache "
                               "(make it writable, or set --cache-dir or DSAUDIT_CACHE_DIR)")
    return folder


class RecordCache:
    """Records keyed by relative path, validated by the file's stamp, a version tag and a digest."""

    def __init__(self, folder: Path, root_key: str, version: str):
        usable_folder(folder)
        name = hashlib.sha256(root_key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
        self.path = folder / f"{name}.sqlite"
        self.root_key = root_key
        self.version = version
        self.notes: list[str] = []
        self.damaged_rows = 0
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._move_aside(exc)

    def _open(self) -> None:
        self.conn = sqlite3.connect(self.path, timeout=30)
        try:
            # larger pages for a new file (ignored for an existing one): rows are about 1.4 KB, and
            # 16 KB pages made writing 60,000 of them about 40% faster than the default 4 KB
            self.conn.execute("PRAGMA page_size=16384")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None or row[0] != str(SCHEMA):   # an older layout: its rows are never read
                self.conn.execute("DROP TABLE IF EXISTS records")
            self.conn.execute("CREATE TABLE IF NOT EXISTS records (path TEXT PRIMARY KEY, stamp TEXT, "
                              "version TEXT, digest BLOB, record BLOB)")
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('root', ?)",
                              (self.root_key.encode("utf-8", "backslashreplace").decode("utf-8"),))
            self.conn.commit()
        except BaseException:
            self.conn.close()
            raise

    def _move_aside(self, exc: Exception) -> None:
        """The file is damaged: keep it for inspection as <name>.damaged, start a new one, say so."""
        try:
            self.conn.close()
        except Exception:
            pass
        aside = self.path.with_name(self.path.name + ".damaged")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            try:
                os.unlink(str(self.path) + suffix)
            except FileNotFoundError:
                pass
        self.notes.append(f"the record cache {_shown(self.path)} was damaged ({exc}); moved it aside to "
                          f"{_shown(aside)} and rebuilding it")
        self._open()

    def lookup(self, keys: Iterable[tuple[str, tuple]]) -> dict[str, dict[str, Any]]:
        """Return the cached records that are still valid for the given (path, stamp)."""
        wanted = {p: stamp_text(s) for p, s in keys}
        try:
            return self._lookup(wanted)
        except sqlite3.DatabaseError as exc:
            self._move_aside(exc)
            return {}

    def _lookup(self, wanted: dict[str, str]) -> dict[str, dict[str, Any]]:
        hits: dict[str, dict[str, Any]] = {}
        cursor = self.conn.execute("SELECT path, stamp, version, digest, record FROM records")
        for path, stamp, version, digest, blob in cursor:
            expect = wanted.get(path)
            if expect is None or expect != stamp or version != self.version:
                continue
            if not isinstance(blob, bytes) or digest != _digest(path, stamp, version, blob):
                self.damaged_rows += 1   # a damaged page: decode the file again, rewrite the row
                continue
            try:
                hits[path] = pickle.loads(blob)
            except Exception:
                self.damaged_rows += 1
        if self.damaged_rows:
            self.notes.append(f"{self.damaged_rows} damaged row(s) in the record cache {_shown(self.path)}; "
                              "those files are decoded again")
        return hits

    def store(self, rows: Iterable[tuple[str, tuple, dict[str, Any] | bytes]]) -> None:
        """Write (path, stamp, record) rows; a record may come already encoded (encode_record)."""
        def encoded():
            version = self.version
            for p, s, r in rows:
                stamp = stamp_text(s)
                blob = r if isinstance(r, bytes) else encode_record(r)
                yield p, stamp, version, _digest(p, stamp, version, blob), blob

        batch = list(encoded())
        try:
            self.conn.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)", batch)
            self.conn.commit()
        except sqlite3.DatabaseError as exc:  # damage SQLite found while writing: start afresh
            self._move_aside(exc)
            self.conn.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)", batch)
            self.conn.commit()

    def prune(self, keep: Iterable[str]) -> None:
        """Forget files that no longer exist in the dataset."""
        keep = set(keep)
        try:
            stale = [(p,) for (p,) in self.conn.execute("SELECT path FROM records") if p not in keep]
            if stale:
                self.conn.executemany("DELETE FROM records WHERE path = ?", stale)
                self.conn.commit()
        except sqlite3.DatabaseError as exc:
            self._move_aside(exc)

    def close(self) -> None:
        self.conn.close()
