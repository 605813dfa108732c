"""Reports and baselines written through a symlink never replace what is not a regular file the user
may write: FIFOs, sockets and folders are refused (exit 2, one line), a read-only file is refused
even when the scan runs as root (which the kernel would let through), and a regular file is still
replaced atomically."""

import json
import os
import socket
import stat

import pytest
from typer.testing import CliRunner

from dsaudit.cli import app
from imagery import make_split_dataset

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, needle):
    lines = result.output.strip().splitlines()
    return (result.exit_code == 2 and len(lines) == 1 and needle in lines[0]
            and "internal error" not in lines[0])


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    make_split_dataset(root, {"train": {"cat": 3, "dog": 3}, "val": {"cat": 2, "dog": 2}}, size=32)
    (root / "train" / "cat" / "empty.png").write_bytes(b"")
    return root


def _fifo(path):
    os.mkfifo(path)
    return path


def _socket(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock  # kept open by the caller; the socket file stays while it lives


def _special_target(kind, tmp_path):
    target = tmp_path / f"target-{kind}"
    keep = None
    if kind == "fifo":
        _fifo(target)
    elif kind == "socket":
        keep = _socket(target)
    elif kind == "folder":
        target.mkdir()
    return target, keep


def _mode(path):
    return stat.S_IFMT(os.lstat(path).st_mode)


@pytest.mark.parametrize("kind, what", [("fifo", "named pipe"), ("socket", "socket"), ("folder", "folder")])
def test_a_report_linked_to_a_special_file_is_refused(data, tmp_path, kind, what):
    target, keep = _special_target(kind, tmp_path)
    before = _mode(target)
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.json").symlink_to(target)
    try:
        result = run("scan", data, "-o", out, "-f", "json")
        assert one_line_error(result, what), result.output
        assert _mode(target) == before  # still a FIFO / socket / folder, not a regular file
        assert (out / "report.json").is_symlink()
        assert sorted(p.name for p in out.iterdir()) == ["report.json"]
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file
    finally:
        if keep is not None:
            keep.close()


@pytest.mark.parametrize("kind, what", [("fifo", "named pipe"), ("socket", "socket")])
def test_a_baseline_linked_to_a_special_file_is_refused(data, tmp_path, kind, what):
    target, keep = _special_target(kind, tmp_path)
    before = _mode(target)
    link = tmp_path / "baseline.json"
    link.symlink_to(target)
    try:
        result = run("baseline", data, "-o", link)
        assert one_line_error(result, what), result.output
        assert _mode(target) == before and link.is_symlink()
    finally:
        if keep is not None:
            keep.close()


def test_a_report_in_place_of_a_fifo_is_refused_without_a_link(data, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    _fifo(out / "report.json")
    result = run("scan", data, "-o", out, "-f", "json")
    assert one_line_error(result, "named pipe"), result.output
    assert stat.S_ISFIFO(os.lstat(out / "report.json").st_mode)


@pytest.mark.parametrize("via_link", [False, True], ids=["plain", "through a link"])
def test_a_read_only_report_or_baseline_is_refused_and_kept(data, tmp_path, via_link):
    """Root may rename over a 0444 file; dsaudit reads the mode bits and refuses."""
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in ("report.json", "baseline.json"):
        (shared / name).write_text('{"keep": true}\n')
        (shared / name).chmod(0o444)
    out = tmp_path / "o"
    out.mkdir()
    if via_link:
        (out / "report.json").symlink_to(shared / "report.json")
        base = tmp_path / "baseline.json"
        base.symlink_to(shared / "baseline.json")
    else:
        out = shared
        base = shared / "baseline.json"
    result = run("scan", data, "-o", out, "-f", "json")
    assert one_line_error(result, "read-only"), result.output
    result = run("baseline", data, "-o", base)
    assert one_line_error(result, "read-only"), result.output
    for name in ("report.json", "baseline.json"):
        assert (shared / name).read_text() == '{"keep": true}\n'
        assert stat.S_IMODE((shared / name).stat().st_mode) == 0o444
    assert sorted(p.name for p in shared.iterdir()) == ["baseline.json", "report.json"]


def test_a_regular_file_behind_a_link_is_still_replaced_atomically(data, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "report.json").write_text("old")
    (shared / "report.json").chmod(0o640)
    inode = (shared / "report.json").stat().st_ino
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.json").symlink_to(shared / "report.json")
    assert run("scan", data, "-o", out, "-f", "json", "--fail-on", "never").exit_code == 0
    assert (out / "report.json").is_symlink()
    assert json.loads((shared / "report.json").read_text())["findings"]
    assert (shared / "report.json").stat().st_ino != inode  # renamed over, not rewritten in place
    assert stat.S_IMODE((shared / "report.json").stat().st_mode) == 0o640


def test_writable_target_helper_reads_mode_bits_not_the_uid():
    """The check works for root too: it reads the permission bits that apply to the caller."""
    from dsaudit.safe_write import may_write

    st = os.stat_result((stat.S_IFREG | 0o444, 0, 0, 1, os.geteuid(), os.getegid(), 0, 0, 0, 0))
    assert not may_write(st)
    st = os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, os.geteuid(), os.getegid(), 0, 0, 0, 0))
    assert may_write(st)
