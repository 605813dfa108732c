"""Group IDs from --group-regex, with a time budget per path.

The pattern is user input and Python's regex engine backtracks: ``(a+)+$`` on a name of thirty
a's and a b takes minutes, and a dataset has many names, so one careless pattern would hang the
scan with no word of why. A match that runs longer than MATCH_SECONDS (a sane pattern takes
microseconds on a path) stops the scan with a ConfigError that names the pattern and the path.

The budget is enforced with SIGALRM: an interval timer ticks every MATCH_SECONDS and a match still
running at two ticks in a row is interrupted (the regex engine checks for signals while it
backtracks), so one stuck match stops after one to two budgets, and a normal scan pays one list
store per path, not a system call. Signals reach only the main thread, so elsewhere (a library
caller's worker thread, a platform without SIGALRM) or while another SIGALRM timer is running,
the pattern runs without a budget.
"""

from __future__ import annotations

import re
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

import pandas as pd

from dsaudit.config import ConfigError

MATCH_SECONDS = 1.0


class _OverBudget(Exception):
    """Raised from the SIGALRM handler inside a match that ran too long."""


@contextmanager
def _watchdog(current: list[int]) -> Iterator[None]:
    """Interrupt the work when `current[0]` (the index of the path being matched) stays the same
    for two timer ticks; a no-op where the timer cannot be used (see the module docstring)."""
    usable = (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
              and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0))
    if not usable:
        yield
        return
    last = [-1]

    def tick(signum, frame) -> None:
        if current[0] == last[0]:
            raise _OverBudget
        last[0] = current[0]

    previous = signal.signal(signal.SIGALRM, tick)
    try:
        signal.setitimer(signal.ITIMER_REAL, MATCH_SECONDS, MATCH_SECONDS)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def apply_group_regex(paths: pd.Series, pattern: str) -> pd.Series:
    """Group ID per path: the regex's first group if it has one, else the whole match; "" if none.

    ConfigError (exit 2) when matching one path exceeds the time budget."""
    regex = re.compile(pattern)
    values = list(paths)
    out: list[str] = []
    current = [0]
    try:
        with _watchdog(current):
            for i, path in enumerate(values):
                current[0] = i
                m = regex.search(path)
                out.append("" if not m else m.group(1) if regex.groups and m.group(1) is not None
                           else m.group(0))
            current[0] = len(values)  # done: a tick that lands before the timer stops sees a change
    except _OverBudget:
        raise ConfigError(f"leakage.group_regex (--group-regex) {pattern!r} ran for more than "
                          f"{MATCH_SECONDS:g} s on one path ({values[current[0]]}) and was stopped: the "
                          "pattern backtracks catastrophically (nested quantifiers such as (a+)+); "
                          "simplify it") from None
    return pd.Series(out, index=paths.index, dtype=object)
