"""SIGTERM ends a command the way Ctrl-C does.

Python's default SIGTERM kills the process on the spot: no cleanup runs, so the index workers were
left behind and no line said why the scan stopped. Raising `Terminated` (a KeyboardInterrupt) from
the handler takes the path Ctrl-C takes: the process pool kills its workers (index/engine.py), no
report is written, and the CLI prints one line and exits 143 (128 + SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread; the old handler returns after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
