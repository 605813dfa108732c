"""Layout discovery on hostile trees: folder symlinks (outside ROOT, loops, repeats) at every level,
very deep nesting, a NUL byte in a manifest path, classes named like splits, an empty ROOT argument,
named pipes and devices in class folders, folders reached twice without a link (bind mounts).

Each real folder is scanned once; a folder link that leaves ROOT, loops or repeats a folder is
reported (DSA014) and not followed; bad input is a finding or one exit-2 line, never a crash or hang.
"""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dsaudit.cli import app
from dsaudit.config import AuditConfig, ProbeConfig
from dsaudit.index.layout import DatasetError, discover
from dsaudit.pipeline import scan
from imagery import real_patches, write_image

_SEEDS = iter(range(10_000))


def _img(path):
    """A distinct real image, so that repeated files can only come from the walk."""
    return write_image(path, real_patches(1, 32, seed=next(_SEEDS))[0])


def _splits(root):
    for split, n in (("train", 3), ("val", 2)):
        for label in ("a", "b"):
            for i in range(n):
                _img(root / split / label / f"{i}.png")
    return root


def _issues(layout, *kinds):
    return {i.path: (i.kind, i.detail) for i in layout.issues if not kinds or i.kind in kinds}


def _labels(layout):
    return {e.rel: (e.split, e.label) for e in layout.entries}


def test_folder_link_out_of_root_is_reported_and_not_walked(tmp_path):
    root = _splits(tmp_path / "data")
    _img(tmp_path / "outside" / "deep" / "secret.png")
    os.symlink(tmp_path / "outside", root / "val" / "b" / "outside_dir")
    layout = discover(root)
    assert not any("secret" in e.rel for e in layout.entries)
    kind, detail = _issues(layout)["val/b/outside_dir"]
    assert kind == "symlink_outside" and "not followed" in detail
    assert len(layout.entries) == 10


def test_link_to_filesystem_root_does_not_walk_the_filesystem(tmp_path):
    """`ln -s / ROOT/val/b/rootfs_link` used to walk all of / (a hang or a RecursionError)."""
    root = _splits(tmp_path / "data")
    os.symlink("/", root / "val" / "b" / "rootfs_link")
    code = ("import sys; from pathlib import Path; from dsaudit.index.layout import discover; "
            "lay = discover(Path(sys.argv[1])); "
            "print(len(lay.entries), [(i.kind, i.path) for i in lay.issues])")
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10 [('symlink_outside', 'val/b/rootfs_link')]"


def test_link_up_to_the_split_folder_does_not_pull_other_classes_in(tmp_path):
    """train/a/up -> .. walked train/b again as class a (conflicting-label errors followed)."""
    root = _splits(tmp_path / "data")
    os.symlink("..", root / "train" / "a" / "up")
    layout = discover(root)
    assert [rel for rel, (split, label) in _labels(layout).items() if label == "a" and split == "train"] == [
        "train/a/0.png", "train/a/1.png", "train/a/2.png"]
    assert len(layout.entries) == 10
    kind, detail = _issues(layout)["train/a/up"]
    assert kind == "symlink_loop" and "links back to a folder above it (train)" in detail


def test_up_link_gives_a_symlink_warning_not_conflicting_label_errors(tmp_path):
    root = _splits(tmp_path / "data")
    os.symlink("..", root / "train" / "a" / "up")
    result = scan(root, AuditConfig(jobs=1, cache=False, select=("DSA014", "DSA2*")))
    assert [(f.check_id, f.subject) for f in result.findings] == [("DSA014", "symlink_loop")]


def test_links_to_folders_scanned_elsewhere_are_reported_once_whatever_the_name_order(tmp_path):
    root = _splits(tmp_path / "data")
    _img(root / "train" / "b" / "sub" / "x.png")
    _img(root / "train" / "a" / "zsub" / "y.png")
    _img(root / "extra" / "e.png")
    os.symlink(root / "train" / "a", root / "val" / "a" / "link_to_train_a")   # walked earlier
    os.symlink("../b/sub", root / "train" / "a" / "into_b")                    # class b walked later
    os.symlink("zsub", root / "train" / "a" / "l_to_zsub")                     # same class, sorts first
    os.symlink("../../extra", root / "train" / "b" / "extra1")                 # inside ROOT, no class
    os.symlink("../../extra", root / "train" / "b" / "extra2")
    layout = discover(root)
    labels = _labels(layout)
    assert labels["train/b/sub/x.png"] == ("train", "b") and labels["train/a/zsub/y.png"] == ("train", "a")
    assert labels["train/b/extra1/e.png"] == ("train", "b")
    assert not any(rel.startswith(("val/a/link_to_train_a", "train/a/into_b", "train/a/l_to_zsub",
                                   "train/b/extra2")) for rel in labels)
    assert len(labels) == 13
    issues = _issues(layout)
    assert issues["val/a/link_to_train_a"] == (
        "symlink_cross_split", "leads to train/a, which is scanned already; not followed")
    assert issues["train/a/into_b"] == ("symlink_loop", "leads into train/b, which is scanned already; not followed")
    assert issues["train/a/l_to_zsub"][0] == "symlink_loop"
    assert issues["train/b/extra2"] == ("symlink_loop", "leads to train/b/extra1, which is scanned already; "
                                                        "not followed")
    assert discover(root).entries == layout.entries  # deterministic


def test_class_and_split_folder_links_leaving_root_are_reported_not_scanned(tmp_path):
    root = _splits(tmp_path / "data")
    _img(tmp_path / "outside" / "c" / "1.png")
    _img(tmp_path / "outside" / "test" / "a" / "2.png")
    os.symlink(tmp_path / "outside" / "c", root / "train" / "c")
    os.symlink(tmp_path / "outside" / "test", root / "test")
    layout = discover(root)
    assert layout.splits == ["train", "val"] and layout.classes == {"train": ["a", "b"], "val": ["a", "b"]}
    assert len(layout.entries) == 10
    issues = _issues(layout)
    assert {p: k for p, (k, _) in issues.items()} == {"train/c": "symlink_outside", "test": "symlink_outside"}
    assert all("not followed" in d for _, d in issues.values())


def test_dangling_and_looping_class_or_split_links_are_symlink_problems_not_stray_files(tmp_path):
    root = _splits(tmp_path / "data")
    os.symlink(tmp_path / "nowhere", root / "train" / "c_dangling")
    os.symlink("c_self", root / "train" / "c_self")
    os.symlink(tmp_path / "nowhere", root / "test")
    os.symlink(root / "train", root / "train" / "c_loop")
    os.symlink(root, root / "Testing")
    layout = discover(root)
    assert {p: k for p, (k, _) in _issues(layout).items()} == {
        "train/c_dangling": "symlink_broken", "train/c_self": "symlink_loop", "test": "symlink_broken",
        "train/c_loop": "symlink_loop", "Testing": "symlink_loop"}
    assert layout.splits == ["train", "val"] and len(layout.entries) == 10
    result = scan(root, AuditConfig(jobs=1, cache=False, select=("DSA014", "DSA015")))
    assert {f.subject for f in result.findings} == {"symlink_broken", "symlink_loop"}


def test_a_linked_class_folder_inside_root_is_still_a_class(tmp_path):
    root = _splits(tmp_path / "data")
    _img(root / "shared" / "c" / "1.png")
    os.symlink("../shared/c", root / "train" / "c")
    layout = discover(root)
    assert _labels(layout)["train/c/1.png"] == ("train", "c")
    assert [i.kind for i in layout.issues] == ["unknown_folder"]  # shared/ itself is not scanned


def test_very_deep_nesting_is_walked_without_recursion_error(tmp_path):
    root = _splits(tmp_path / "data")
    deep = os.path.join(root, "train", "a")
    for _ in range(1100):  # one mkdir at a time: os.makedirs itself recurses this deep
        deep = os.path.join(deep, "d")
        os.mkdir(deep)
    _img(os.path.join(deep, "deep.png"))
    try:
        layout = discover(root)
        assert len(layout.entries) == 11
        assert layout.entries[3].rel == "train/a/" + "d/" * 1100 + "deep.png"
    finally:  # shutil.rmtree (pytest's tmp cleanup) recurses too: remove the chain bottom-up
        os.remove(os.path.join(deep, "deep.png"))
        while os.path.basename(deep) == "d":
            os.rmdir(deep)
            deep = os.path.dirname(deep)


def test_walk_order_is_sorted_names_depth_first(tmp_path):
    """The loader order: a sub-folder's files come where its name sorts among the files."""
    for rel in ("a.png", "b/c.png", "b/a.png", "b/d/e/f.png", "b0.png", "m/x.png", "m.png", "z.png"):
        _img(tmp_path / "cat" / rel)
    _img(tmp_path / "dog" / "1.png")
    layout = discover(tmp_path)
    assert [(e.rel, e.order) for e in layout.entries] == [
        ("cat/a.png", 0), ("cat/b/a.png", 1), ("cat/b/c.png", 2), ("cat/b/d/e/f.png", 3), ("cat/b0.png", 4),
        ("cat/m/x.png", 5), ("cat/m.png", 6), ("cat/z.png", 7), ("dog/1.png", 8)]


def test_manifest_path_with_a_nul_byte_is_a_missing_row_not_a_crash(tmp_path):
    _img(tmp_path / "imgs" / "a.png")
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\nimgs/a.png,cat\nimgs/a\x00.png,dog\n")
    layout = discover(tmp_path, manifest)
    assert [e.rel for e in layout.entries] == ["imgs/a.png"]
    (issue,) = layout.issues
    assert (issue.kind, issue.path) == ("manifest_missing", "imgs/a\\x00.png")
    assert "line 3" in issue.detail and "NUL" in issue.detail
    (finding,) = scan(None, AuditConfig(jobs=1, cache=False, select=("DSA016",)), manifest).findings
    assert finding.paths == ("imgs/a\\x00.png",)


def test_split_folders_without_class_folders_explain_why_nothing_was_found(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    _img(tmp_path / "train" / "1.png")
    _img(tmp_path / "extra" / "dog" / "2.png")
    with pytest.raises(DatasetError) as caught:
        discover(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "'train' were taken as split folders" in message and "1 file(s) directly inside" in message
    assert "not scanned: extra" in message


def test_only_unfollowed_class_links_say_so_in_the_error(tmp_path):
    (tmp_path / "out" / "c").mkdir(parents=True)
    _img(tmp_path / "out" / "c" / "1.png")
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "out" / "c", tmp_path / "data" / "c")
    with pytest.raises(DatasetError, match="1 symlink.s. were not followed"):
        discover(tmp_path / "data")


def test_empty_root_argument_is_a_one_line_usage_error(tmp_path):
    _splits(tmp_path / "data")
    old = os.getcwd()
    os.chdir(tmp_path / "data")  # an empty ROOT used to scan the current folder
    try:
        result = CliRunner().invoke(app, ["scan", "", "-o", str(tmp_path / "out")], catch_exceptions=False)
    finally:
        os.chdir(old)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "empty path" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_link_from_val_to_train_files_is_a_leakage_error(tmp_path):
    """A loader that follows links reads train/a's files in val too: an error, not just a loop."""
    root = _splits(tmp_path / "data")
    os.symlink(root / "train" / "a", root / "val" / "a" / "more")
    os.symlink("../../train/b", root / "val" / "b" / "same_as_train_b")
    result = scan(root, AuditConfig(jobs=1, cache=False, select=("DSA014",)))
    assert [(f.subject, f.severity.name, set(f.paths)) for f in result.findings] == [
        ("symlink_cross_split", "ERROR", {"val/a/more", "val/b/same_as_train_b"})]
    assert result.gate["exit_code"] == 1


# -- entries that are not regular files, folders reached twice without a link ----------------------

def test_fifo_and_link_to_a_device_are_not_regular_files_not_empty_ones(tmp_path):
    """A FIFO (opening it blocks) and a link to /dev/zero (reading never ends) both have size 0:
    they used to be reported as empty files. They are skipped, never opened, and reported."""
    root = _splits(tmp_path / "data")
    os.mkfifo(root / "train" / "a" / "pipe.png")
    os.symlink("/dev/zero", root / "val" / "b" / "zero.png")
    layout = discover(root)
    assert not any(e.rel in ("train/a/pipe.png", "val/b/zero.png") for e in layout.entries)
    assert _issues(layout, "not_regular_file") == {
        "train/a/pipe.png": ("not_regular_file", "a named pipe (FIFO); not read"),
        "val/b/zero.png": ("not_regular_file", "symlink to /dev/zero, a character device; not read")}
    result = scan(root, AuditConfig(jobs=1, cache=False, probe=ProbeConfig(mode="off")))
    assert not [f for f in result.findings if f.check_id == "DSA003"]
    found = [f for f in result.findings if f.subject == "not_regular_file"]
    assert [(f.check_id, f.severity.name, set(f.paths)) for f in found] == [
        ("DSA015", "ERROR", {"train/a/pipe.png", "val/b/zero.png"})]
    assert "not regular files" in found[0].title and result.gate["exit_code"] == 1


def test_a_class_of_only_a_fifo_says_so_in_the_error(tmp_path):
    (tmp_path / "data" / "a").mkdir(parents=True)
    os.mkfifo(tmp_path / "data" / "a" / "pipe.png")
    with pytest.raises(DatasetError, match="1 entry that are not regular files .* were not read"):
        discover(tmp_path / "data")


def test_a_manifest_row_naming_a_fifo_is_unreadable_not_missing_and_never_blocks(tmp_path):
    root = _splits(tmp_path / "data")
    os.mkfifo(root / "train" / "a" / "pipe.png")
    (root / "labels.csv").write_text("path,label,split\ntrain/a/0.png,a,train\ntrain/a/pipe.png,a,train\n"
                                     "val/a/0.png,a,val\n")
    code = ("from pathlib import Path\n"
            "from dsaudit.config import AuditConfig, ProbeConfig\n"
            "from dsaudit.pipeline import scan\n"
            f"r = scan(None, AuditConfig(jobs=1, cache=False, probe=ProbeConfig(mode='off')), "
            f"Path({str(root / 'labels.csv')!r}))\n"
            "print(sorted((f.check_id, f.paths[0], f.message) for f in r.findings "
            "if 'pipe' in ' '.join(f.paths)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "DSA016" not in done.stdout and "DSA003" not in done.stdout, done.stdout
    assert "'DSA001', 'train/a/pipe.png'" in done.stdout and "not a regular file but a named pipe" in done.stdout


def test_reading_a_fifo_fails_at_once_even_when_it_replaced_a_file_after_the_walk(tmp_path):
    fifo = tmp_path / "swapped.png"
    os.mkfifo(fifo)
    code = ("from dsaudit.index import io\n"
            f"path = {str(fifo)!r}\n"
            "for read in (io.read_bytes, io.open_binary):\n"
            "    try:\n"
            "        read(path)\n"
            "    except OSError as exc:\n"
            "        print('refused:', exc.strerror)\n")
    # no writer ever comes: a blocking open would hang until the timeout
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.splitlines() == ["refused: not a regular file but a named pipe (FIFO)"] * 2, \
        done.stdout + done.stderr


def _fake_bind_mount(monkeypatch, mount: str, source: str):
    """Make the walker see the folder `mount` as the same (st_dev, st_ino) as `source`, as a bind
    mount of `source` would (tests cannot mount)."""
    from dsaudit.index import layout as layout_module

    real_key = layout_module._Walker._dir_key

    def fake_key(path):
        return real_key(source if os.path.realpath(path) == os.path.realpath(mount) else path)

    monkeypatch.setattr(layout_module._Walker, "_dir_key", staticmethod(fake_key))


def test_a_folder_reached_twice_without_a_link_is_a_repeated_folder_not_a_symlink_loop(tmp_path, monkeypatch):
    root = _splits(tmp_path / "data")
    _img(root / "train" / "a" / "sub" / "x.png")
    _img(root / "train" / "a" / "zmount" / "x.png")
    _fake_bind_mount(monkeypatch, root / "train" / "a" / "zmount", root / "train" / "a" / "sub")
    layout = discover(root)
    assert _issues(layout) == {"train/a/zmount": (
        "repeated_folder", "same folder as train/a/sub (a bind mount?); not walked again")}
    assert "train/a/zmount/x.png" not in {e.rel for e in layout.entries}
    result = scan(root, AuditConfig(jobs=1, cache=False, select=("DSA014",)))
    assert [(f.subject, f.severity.name, f.paths) for f in result.findings] == [
        ("repeated_folder", "WARNING", ("train/a/zmount",))]
    assert result.findings[0].title.startswith("1 folder(s) that are a folder scanned already")
    assert "symlink" not in result.findings[0].title.replace("without a symlink", "")


def test_a_bind_mount_of_a_train_class_in_val_is_a_cross_split_error(tmp_path, monkeypatch):
    root = _splits(tmp_path / "data")
    _fake_bind_mount(monkeypatch, root / "val" / "b", root / "train" / "b")
    result = scan(root, AuditConfig(jobs=1, cache=False, select=("DSA014",)))
    assert [(f.subject, f.severity.name, f.paths) for f in result.findings] == [
        ("repeated_folder_cross_split", "ERROR", ("val/b",))]
    assert "same files in two splits" in result.findings[0].title
