"""Memoised dataset-level results (finished hashes, matched pairs) in the cache folder.

The record cache makes a rescan decode nothing; this makes it recompute nothing either: a result is
stored with a key built from the index fingerprint (paths, labels, splits and content hashes of
every file) plus the version and settings of the computation, and reused only when the key matches.
One entry per name and dataset root is kept (the latest), so the folder does not grow with rescans.
Each file starts with a digest of the rest: a damaged file is recomputed, never read as a result.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable


def stable_key(*parts: Any) -> str:
    """A digest of JSON-able parts (dataclasses should be passed as dicts)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()


class Memo:
    def __init__(self, folder: Path, root_key: str):
        self.folder = folder
        self.prefix = hashlib.sha256(root_key.encode("utf-8", "surrogateescape")).hexdigest()[:20]

    def _path(self, name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.folder / f"{self.prefix}-{safe}.pkl"

    def get_or_compute(self, name: str, key: str, compute: Callable[[], Any]) -> Any:
        path = self._path(name)
        try:
            with open(path, "rb") as fh:
                digest, payload = fh.read(32), fh.read()
            if hashlib.sha256(payload).digest() == digest:
                stored_key, value = pickle.loads(payload)
                if stored_key == key:
                    return value
        except Exception:  # missing, stale or damaged: recompute
            pass
        value = compute()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            payload = pickle.dumps((key, value), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(fd, "wb") as fh:
                fh.write(hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, path)
        except Exception:  # an unwritable cache never stops a scan
            pass
        return value
