"""The process table as Linux's /proc shows it, for the tests that check no worker outlives a scan
(tests/test_signals.py, tests/test_soak.py)."""

from __future__ import annotations

import os


def process_table() -> dict[int, tuple[str, int]]:
    """pid -> (state letter, parent pid) of every process now ("Z": exited, not yet reaped)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()   # the name in () may hold spaces
            except OSError:
                continue   # gone between the listing and the read
            table[int(entry)] = (fields[0], int(fields[1]))
    return table


def children(pid: int) -> list[int]:
    """The direct children of `pid`, exited ones included."""
    return [p for p, (_, parent) in process_table().items() if parent == pid]


def descendants(pid: int) -> list[int]:
    """Every live (not exited) process below `pid`."""
    parents = {p: parent for p, (state, parent) in process_table().items() if state != "Z"}
    found, frontier = [], [pid]
    while frontier:
        below = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == below]
        found.extend(kids)
        frontier.extend(kids)
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (an exited process waiting to be reaped does not)."""
    state = process_table().get(pid)
    return state is not None and state[0] != "Z"
