"""A scan killed mid-index leaves nothing behind: its workers die with it (no orphan holds the
terminal or a pipe open, so `dsaudit scan ... | cat` ends), SIGTERM stops it as Ctrl-C does (exit
143, one line saying so, no report), and Ctrl-C (SIGINT) is exit 130. Real processes, real signals."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from imagery import real_patches, write_image
from procs import alive, children

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory):
    """Enough files that indexing with two workers takes seconds: one real 128-px PNG copied."""
    root = tmp_path_factory.mktemp("signals") / "data"
    one = write_image(root / "train" / "a" / "img0000.png", real_patches(1, size=128, seed=2)[0]).read_bytes()
    for split, n in (("train", 1500), ("val", 500)):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n // 2):
                (folder / f"img{i:04d}.png").write_bytes(one)
    return root


def start_scan(root, out, tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC, "CI": "1", "DSAUDIT_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "dsaudit.cli", "scan", str(root), "-o", str(out), "-j", "2",
                             "--no-cache", "-f", "json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = children(proc.pid)
        if len(workers) >= 2:
            break
        time.sleep(0.05)
    assert len(workers) >= 2, "the scan never started its workers"
    time.sleep(0.5)  # well inside the index pass
    assert proc.poll() is None, "the scan finished before it could be killed: make the set bigger"
    return proc, workers


def read_to_eof(proc, timeout):
    """What `| cat` does: read stdout and stderr until every writer has closed them."""
    got = {}

    def reader(name, stream):
        got[name] = stream.read()

    threads = [threading.Thread(target=reader, args=(n, s), daemon=True)
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return got, all(not t.is_alive() for t in threads)


def wait_gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_sigkill_of_a_scan_mid_index_leaves_no_worker_and_closes_its_pipes(slow_data, tmp_path):
    proc, workers = start_scan(slow_data, tmp_path / "o", tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    survivors = wait_gone(workers)
    try:
        assert survivors == [], f"workers {survivors} outlived the killed scan"
        _, ended = read_to_eof(proc, 20)
        assert ended, "stdout/stderr stayed open after the scan was killed (`| cat` would hang)"
        assert not (tmp_path / "o" / "report.json").exists()
    finally:
        for p in workers:  # never leave the machine with orphans, even when the test fails
            if alive(p):
                os.kill(p, signal.SIGKILL)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_stop_a_scan_cleanly(slow_data, tmp_path, sig, code):
    proc, workers = start_scan(slow_data, tmp_path / "o", tmp_path)
    t0 = time.monotonic()
    proc.send_signal(sig)  # to the main process only, as `kill PID` or a CI runner's timeout does
    survivors = []
    try:
        got, ended = read_to_eof(proc, 30)
        assert ended, "the scan did not stop on the signal"
        proc.wait(30)
        elapsed = time.monotonic() - t0
        survivors = wait_gone(workers)
        assert survivors == [], f"workers {survivors} outlived the stopped scan"
        assert proc.returncode == code, got
        err = got["err"].decode().strip().splitlines()
        assert len(err) == 1 and "interrupted" in err[0] and "Traceback" not in got["err"].decode(), err
        assert not (tmp_path / "o" / "report.json").exists()
        assert elapsed < 15, f"stopping took {elapsed:.1f} s: the queued work was not cancelled"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in workers:  # never leave the machine with orphans, even when the test fails
            if alive(p):
                os.kill(p, signal.SIGKILL)
