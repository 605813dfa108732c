"""Find the files of a dataset and what split and class each belongs to, without opening any image.

Three layouts are recognised, and the one found is reported with how and why (``Layout.reading``):

* ``splits``:  ROOT/<split>/<class>/<files>. Which folders are splits is read by index/splits.py from
  their names (a split word in any case or form, with affixes: TrainingData, train_dir, seg_train),
  through one wrapper folder, or from their shape (top-level folders holding the same classes), or
  given with --split. Other top-level folders are reported, not guessed, and not scanned.
* ``pool``:    ROOT/<class>/<files>, one pool with no split.
* ``manifest``: a CSV with columns ``path,label`` and optional ``split``, ``group``; paths are
  relative to the CSV file.

Class folders are walked recursively, as Keras' ``image_dataset_from_directory`` does. Hidden and
system files are skipped and reported. Folder symlinks (split, class or sub-folder) are followed
only when they stay inside ROOT and lead to a folder not scanned already, so each real folder is
scanned once; links that leave ROOT, loop, dangle or repeat a folder are reported, not followed,
and so is a folder reached twice without a link (a bind mount). A file symlink is a sample even
when it leaves ROOT (loaders open it), and is reported then. Only regular files are samples: named
pipes, devices and sockets (or links to them) are reported and never opened.
Root-level problems raise :class:`DatasetError`; everything else is recorded as a
:class:`WalkIssue` for the integrity checks to turn into findings.
"""

from __future__ import annotations

import csv
import errno
import io as io_module
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from dsaudit.index.errors import DatasetError  # noqa: F401 (where the callers look for it)
from dsaudit.index.io import is_remote, special_file_type
from dsaudit.index.splits import SPLIT_ORDER, Plan, canonical_split, plan_from_option, plan_layout, split_of_name

SYSTEM_NAMES = {"thumbs.db", "desktop.ini", "__macosx", "$recycle.bin", "system volume information"}


def display_path(path: str) -> str:
    """A printable, JSON-safe form of an OS path: undecodable bytes become backslash escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def within(real: str, root_real: str) -> bool:
    """Whether the resolved path `real` is `root_real` or lies below it (both already realpath'd)."""
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether `path` resolves to a place inside `root` (symlinks followed): where dsaudit must never
    write (reports, baselines, caches) and what a symlink must not leave."""
    return within(os.path.realpath(path), os.path.realpath(root))


def is_hidden_or_system(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


@dataclass(frozen=True)
class FileEntry:
    """One file that a loader would treat as a sample: where it is and what it is labelled."""

    rel: str            # display path relative to ROOT, "/"-separated
    abs_path: str       # the OS path to open (may hold surrogate escapes for non-UTF-8 names)
    split: str          # "train" | "val" | "test" | "" (no split)
    label: str
    group: str = ""     # from a manifest "group" column; --group-regex is applied later
    order: int = 0      # position in the order a loader walks the files (or the manifest row order)


@dataclass(frozen=True)
class WalkIssue:
    """Something the walk noticed that is not a sample: reported by the integrity checks."""

    kind: str           # hidden | symlink_loop | symlink_cross_split | symlink_outside | symlink_broken |
                        # repeated_folder | repeated_folder_cross_split | not_regular_file |
                        # unknown_folder | stray_file | empty_class | unreadable_dir | duplicate_split_folder |
                        # manifest_missing | manifest_bad_row | unknown_split_value
    path: str           # display path relative to ROOT (or the manifest row)
    detail: str = ""
    split: str = ""
    label: str = ""


@dataclass
class Layout:
    kind: str                                       # "splits" | "pool" | "manifest"
    root: Path
    splits: list[str]                               # canonical split names present, in train/val/test order
    split_folders: dict[str, list[str]]             # canonical split -> folder names on disk
    classes: dict[str, list[str]]                   # split -> sorted class names (empty ones included)
    entries: list[FileEntry]
    issues: list[WalkIssue] = field(default_factory=list)
    manifest: str | None = None
    reading: list[str] = field(default_factory=list)  # how the layout was read and why, one sentence each

    @property
    def has_splits(self) -> bool:
        return self.kind != "pool" and any(s for s in self.splits)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "splits": list(self.splits),
            "split_folders": {k: list(v) for k, v in self.split_folders.items()},
            "classes": {k: list(v) for k, v in self.classes.items()},
            "manifest": self.manifest,
            "files": len(self.entries),
            "reading": list(self.reading),
        }


class _Walker:
    """Loop-safe, iterative walk of the class folders of one scan.

    Every real folder is scanned at most once per scan. Before any class folder is walked, ROOT, the
    split folders and the class folders are *claimed* (by (st_dev, st_ino)), so a link to any of them
    (or into a class folder) is reported and not followed, whichever name sorts first: a loader that
    follows it would read the same files twice, under another label or split. A folder symlink that
    resolves outside ROOT is reported and never followed (it may lead to `/`); a file symlink that
    leaves ROOT is still a sample (loaders open it), but reported.
    """

    def __init__(self, root: Path, issues: list[WalkIssue]):
        self.root = root
        self.root_real = os.path.realpath(root)
        self.issues = issues
        self.seen: dict[tuple[int, int], str] = {}      # folder key -> path it is scanned as
        self.split_of: dict[tuple[int, int], str] = {}  # folder key -> split it is scanned in
        self.class_keys: set[tuple[int, int]] = set()   # keys of the claimed class folders
        try:
            self.seen[self._dir_key(str(root))] = str(root)
        except OSError:
            pass  # check_root passed: only a race gets here, and listing ROOT will say so

    def rel(self, path: str) -> str:
        return display_path(os.path.relpath(path, self.root)).replace(os.sep, "/")

    def _where(self, key: tuple[int, int]) -> str:
        """Where a claimed folder is scanned, for messages (computed only when one is needed)."""
        rel = self.rel(self.seen[key])
        return "ROOT" if rel == "." else rel

    def inside_root(self, real: str) -> bool:
        return within(real, self.root_real)

    @staticmethod
    def _dir_key(path: str) -> tuple[int, int]:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)

    def link_error(self, path: str, exc: OSError, split: str = "", label: str = "") -> WalkIssue:
        """The issue for a symlink whose target cannot be reached: a loop (ELOOP) or broken."""
        kind = "symlink_loop" if exc.errno == errno.ELOOP else "symlink_broken"
        try:
            target = f"points to {display_path(os.readlink(path))}"
        except OSError:
            target = "target unknown"
        return WalkIssue(kind, self.rel(path), target, split, label)

    def stray(self, entry: os.DirEntry, detail: str, split: str = "") -> WalkIssue:
        """A non-folder entry where folders are expected: a broken or looping link, or a stray file."""
        if _is_link(entry):
            try:
                os.stat(entry.path)
            except OSError as exc:
                return self.link_error(entry.path, exc, split)
        return WalkIssue("stray_file", self.rel(entry.path), detail, split)

    def admit(self, path: str, is_link: bool, split: str, label: str,
              is_class: bool = False) -> WalkIssue | None:
        """Claim a folder for walking: None when it is to be walked, else the issue saying why not.

        Refused: links leading outside ROOT, folders already claimed (a loop when the target is
        above the link, a repeat otherwise), and links into a claimed class folder."""
        real = os.path.realpath(path) if is_link else ""
        if is_link and not self.inside_root(real):
            return WalkIssue("symlink_outside", self.rel(path),
                             f"points outside ROOT to {display_path(real)}; not followed", split, label)
        try:
            key = self._dir_key(path)
        except OSError as exc:
            if is_link:
                return self.link_error(path, exc, split, label)
            return WalkIssue("unreadable_dir", self.rel(path), str(exc.strerror or exc), split, label)
        if key in self.seen:
            return WalkIssue(self._repeat_kind(split, self.split_of.get(key, ""), is_link), self.rel(path),
                             self._repeat_detail(path, is_link, real, key), split, label)
        if is_link:
            container = self._class_containing(real)
            if container is not None:
                where, other_split = container
                return WalkIssue(self._repeat_kind(split, other_split), self.rel(path),
                                 f"leads into {where}, which is scanned already; not followed",
                                 split, label)
        self.seen[key] = path
        self.split_of[key] = split
        if is_class:
            self.class_keys.add(key)
        return None

    def admit_all(self, folders: list[tuple[str, bool, str, str]], is_class: bool = False) -> list[WalkIssue | None]:
        """admit() each (path, is_link, split, label), real folders before links, so that a real
        folder is never reported as a repeat of a link to it that happens to sort first."""
        verdicts: list[WalkIssue | None] = [None] * len(folders)
        for links in (False, True):
            for i, (path, is_link, split, label) in enumerate(folders):
                if is_link == links:
                    verdicts[i] = self.admit(path, is_link, split, label, is_class)
        return verdicts

    @staticmethod
    def _repeat_kind(split: str, other_split: str, is_link: bool = True) -> str:
        """A repeat that crosses splits is leakage for a loader that follows links (the same files
        in train and val), not just a loop: it gets a kind of its own, reported as an error. A
        folder reached again without any link (a bind mount, a folder hard link) is no symlink
        problem and is named for what it is."""
        base = "symlink" if is_link else "repeated_folder"
        if split and other_split and split != other_split:
            return f"{base}_cross_split"
        return "symlink_loop" if is_link else base

    def _repeat_detail(self, path: str, is_link: bool, real: str, key: tuple[int, int]) -> str:
        if not is_link:
            return f"same folder as {self._where(key)} (a bind mount?); not walked again"
        here = os.path.realpath(os.path.dirname(path))
        if here == real or here.startswith(real.rstrip(os.sep) + os.sep):
            return f"links back to a folder above it ({self._where(key)}); not followed"
        return f"leads to {self._where(key)}, which is scanned already; not followed"

    def _class_containing(self, real: str) -> tuple[str, str] | None:
        """(where it is scanned, its split) of the claimed class folder that holds the folder
        `real` (a path inside ROOT), if any."""
        parent = os.path.dirname(real)
        while parent != self.root_real and self.inside_root(parent):
            try:
                key = self._dir_key(parent)
            except OSError:
                return None
            if key in self.class_keys:
                return self._where(key), self.split_of.get(key, "")
            parent, previous = os.path.dirname(parent), parent
            if parent == previous:
                return None
        return None

    def walk(self, folder: str, split: str, label: str) -> list[str]:
        """Sample files under an admitted class folder in loader order.

        Names are sorted in each folder and a sub-folder's files come where its name sorts
        (depth-first), exactly as a recursive walk; an explicit stack keeps any depth within limits."""
        files: list[str] = []
        stack = [iter(self._listing(folder, split, label))]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                continue
            kind = self._entry_kind(entry, split, label)
            if kind == "file":
                files.append(entry.path)
            elif kind in ("dir", "linked_dir"):
                issue = self.admit(entry.path, kind == "linked_dir", split, label)
                if issue is not None:
                    self.issues.append(issue)
                else:
                    stack.append(iter(self._listing(entry.path, split, label)))
        return files

    def _listing(self, folder: str, split: str, label: str) -> list[os.DirEntry]:
        try:
            return _list_dir(Path(folder))
        except OSError as exc:
            self.issues.append(WalkIssue("unreadable_dir", self.rel(folder), str(exc.strerror or exc),
                                         split, label))
            return []

    def _entry_kind(self, entry: os.DirEntry, split: str, label: str) -> str | None:
        """"file", "dir" or "linked_dir"; None (with the issue recorded) for what is not walked.

        Only regular files are samples: a named pipe, a device or a socket (or a link to one) is
        reported and never opened, since reading a FIFO blocks until a writer comes and /dev/zero
        never ends; their size of 0 made them look like empty files."""
        path = entry.path
        if is_hidden_or_system(entry.name):
            self.issues.append(WalkIssue("hidden", self.rel(path), "", split, label))
            return None
        try:
            is_link = entry.is_symlink()
            if not is_link and entry.is_dir(follow_symlinks=False):
                return "dir"
            if not is_link and entry.is_file(follow_symlinks=False):
                return "file"
            try:   # a link's target, or what a non-link that is neither file nor folder is
                st = os.stat(path) if is_link else entry.stat(follow_symlinks=False)
            except OSError as exc:
                if not is_link:
                    raise
                self.issues.append(self.link_error(path, exc, split, label))
                return None
        except OSError as exc:
            self.issues.append(WalkIssue("unreadable_dir", self.rel(path), str(exc), split, label))
            return None
        if stat.S_ISDIR(st.st_mode):
            return "linked_dir"
        if not stat.S_ISREG(st.st_mode):
            via = f"symlink to {display_path(os.path.realpath(path))}, " if is_link else ""
            self.issues.append(WalkIssue("not_regular_file", self.rel(path),
                                         f"{via}{special_file_type(st.st_mode)}; not read", split, label))
            return None
        real = os.path.realpath(path)
        if not self.inside_root(real):
            self.issues.append(WalkIssue("symlink_outside", self.rel(path),
                                         f"points outside ROOT to {display_path(real)}", split, label))
        return "file"


def _list_dir(path: Path) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks: a linked class folder is a class folder
    except OSError:
        return False


def _is_link(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def check_root(root: Path) -> Path:
    """Raise DatasetError with one clear line when ROOT cannot be scanned at all."""
    if not os.path.lexists(root):
        raise DatasetError(f"dataset root does not exist: {display_path(str(root))}")
    if not root.exists():
        raise DatasetError(f"dataset root is a broken symlink: {display_path(str(root))}")
    if not root.is_dir():
        raise DatasetError(f"dataset root is not a folder: {display_path(str(root))} "
                           "(give the folder that holds the class or split folders, or use --manifest)")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DatasetError(f"dataset root is not readable (permission denied): {display_path(str(root))}")
    return root


def _class_folder_events(walker: _Walker, parent: str, split: str) -> list[tuple]:
    """What a split folder (or ROOT of a pool) holds, in name order: ("issue", WalkIssue) for
    what is reported, ("class", path, is_link, split, label) for each candidate class folder."""
    try:
        items = _list_dir(Path(parent))
    except OSError as exc:
        return [("issue", WalkIssue("unreadable_dir", walker.rel(parent), str(exc.strerror or exc), split))]
    events: list[tuple] = []
    for e in items:
        if is_hidden_or_system(e.name):
            events.append(("issue", WalkIssue("hidden", walker.rel(e.path), "", split)))
        elif _is_dir(e):
            events.append(("class", e.path, _is_link(e), split, display_path(e.name)))
        else:
            events.append(("issue", walker.stray(e, "file outside any class folder; not scanned", split)))
    return events


def no_class_folders(where: str, n_files: int) -> DatasetError:
    """The one-line error for a ROOT (a folder or a bucket prefix) without any class folder."""
    if n_files:
        return DatasetError(f"found {n_files} files directly in {where} but no class folders; expected "
                            "ROOT/<class>/<files> or ROOT/<split>/<class>/<files> (or describe the files "
                            "with --manifest labels.csv)")
    return DatasetError(f"no class folders and no images in {where}")


def nothing_found(where: str, kind: str, split_names: list[str], classes: dict[str, list[str]],
                  issues: list[WalkIssue]) -> DatasetError:
    """The one-line error for a layout with no sample file in ROOT (a folder or a bucket prefix),
    saying how ROOT was read and why it is empty, since the findings that would explain it are
    never shown when the scan stops."""
    n_classes = sum(len(v) for v in classes.values())
    head = f"no files found in the class folders of {where}"
    parts: list[str] = []
    if kind == "splits":
        names = ", ".join(repr(n) for n in split_names)
        held = f"{n_classes} class folder(s), all empty" if n_classes else "no class folders"
        loose = sum(1 for i in issues if i.kind == "stray_file" and i.split)
        parts.append(f"the top-level folder(s) {names} were taken as split folders (a folder named like "
                     f"train/val/test marks a ROOT/<split>/<class>/<files> layout) and hold {held}"
                     + (f", with {loose} file(s) directly inside" if loose else ""))
        unknown = [i.path for i in issues if i.kind == "unknown_folder"]
        if unknown:
            parts.append(f"other top-level folder(s) were not scanned: {', '.join(unknown[:5])}"
                         + (" ..." if len(unknown) > 5 else "")
                         + "; if they are classes, rename the split-like folder(s) or use --manifest")
    else:
        parts.append(f"{n_classes} class folder(s), all empty" if n_classes else "no class folder could be scanned")
    links = sum(1 for i in issues if i.kind.startswith("symlink_"))
    if links:
        parts.append(f"{links} symlink(s) were not followed (leaving ROOT, looping, dangling or repeating a folder)")
    repeats = sum(1 for i in issues if i.kind.startswith("repeated_folder"))
    if repeats:
        parts.append(f"{repeats} folder(s) reached a second time (bind mounts?) were not walked again")
    special = sum(1 for i in issues if i.kind == "not_regular_file")
    if special:
        parts.append(f"{special} entr{'y' if special == 1 else 'ies'} that are not regular files (named pipes, "
                     "devices, sockets) were not read")
    return DatasetError(f"{head}: {'; '.join(parts)}")


def _local_lister(root: Path) -> Callable[[str], list[str] | None]:
    """Visible sub-folder names (links followed, as a loader does) of a folder relative to ROOT, in
    name order; None when it cannot be listed. Memoised: the split reading asks more than once."""
    memo: dict[str, list[str] | None] = {}

    def lister(rel: str) -> list[str] | None:
        if rel not in memo:
            try:
                items = _list_dir(root / rel if rel else root)
            except OSError:
                memo[rel] = None
            else:
                memo[rel] = [e.name for e in items
                             if not is_hidden_or_system(e.name) and _is_dir(e)]
        return memo[rel]

    return lister


def _local_sizes(root: Path, lister) -> Callable[[str], int]:
    """Entries directly inside the class folders of a top-level folder: which of several same-shaped
    folders is the largest (train) when names say nothing."""
    def sizes(rel: str) -> int:
        total = 0
        for name in lister(rel) or []:
            try:
                with os.scandir(root / rel / name) as it:
                    total += sum(1 for _ in it)
            except OSError:
                pass
        return total

    return sizes


def read_plan(lister, top_dirs: list[str], chosen: dict[str, list[str]] | None, sizes=None) -> Plan:
    """The split plan: the --split choice when given, else read from names and shapes."""
    if chosen:
        return plan_from_option(lister, chosen, top_dirs)
    return plan_layout(lister, sizes)


def check_chosen_splits(lister, chosen: dict[str, list[str]], where: str) -> None:
    """DatasetError (exit 2) for a --split folder that is not a folder of ROOT."""
    for split, folders in chosen.items():
        for folder in folders:
            parent, _, name = folder.rstrip("/").rpartition("/")
            if name not in (lister(parent) or []):
                raise DatasetError(f"--split {split}={folder}: no such folder in {where}")


def discover(root: Path, manifest: Path | None = None,
             chosen: dict[str, list[str]] | None = None) -> Layout:
    """Work out the layout of ROOT (or read the manifest) and list every sample file.

    Which folders are splits is read by index/splits.py (names, one wrapper level, shapes, or the
    `chosen` folders of --split); how and why is in `Layout.reading`. A split or class folder that is
    a symlink is followed only when it stays inside ROOT and is not a folder claimed already (ROOT,
    another split or class folder, or inside one); otherwise it is reported (DSA014) and not
    scanned, like a folder link inside a class folder. The layout kind is still decided from the
    folder names alone, so reporting a link never changes it."""
    if manifest is not None and not is_remote(str(manifest)):
        return _from_manifest(root, manifest)
    if is_remote(str(root)) or (manifest is not None and is_remote(str(manifest))):
        from dsaudit.index import remote

        return remote.discover(str(root) if root is not None else None,
                               str(manifest) if manifest is not None else None, chosen=chosen)
    root = check_root(root)
    try:
        top = _list_dir(root)
    except OSError as exc:
        raise DatasetError(f"cannot list dataset root {display_path(str(root))}: "
                           f"{exc.strerror or exc}") from None
    issues: list[WalkIssue] = []
    walker = _Walker(root, issues)
    dirs = [e for e in top if not is_hidden_or_system(e.name) and _is_dir(e)]
    stray_top = [e for e in top if not is_hidden_or_system(e.name) and not _is_dir(e)]
    lister = _local_lister(root)
    if chosen:
        check_chosen_splits(lister, chosen, display_path(str(root)))
    plan = read_plan(lister, [e.name for e in dirs], chosen, _local_sizes(root, lister))
    issues.extend(WalkIssue(kind, display_path(path), detail) for kind, path, detail in plan.warnings)

    entries: list[FileEntry] = []
    classes: dict[str, list[str]] = {}
    split_folders: dict[str, list[str]] = {}
    events: list[tuple] = []

    if plan.splits:
        kind = "splits"
        ordered = [(split, folder) for split in SPLIT_ORDER for folder in plan.splits.get(split, [])]
        paths = [str(root / folder) for _, folder in ordered]
        verdicts = walker.admit_all([(p, os.path.islink(p), split, "") for p, (split, _) in zip(paths, ordered)])
        for (split, folder), path, refused in zip(ordered, paths, verdicts):
            if refused is not None:
                events.append(("issue", refused))
                continue
            if split in split_folders:
                events.append(("issue", WalkIssue(
                    "duplicate_split_folder", walker.rel(path),
                    f"also the {split!r} split as {split_folders[split][0]!r}; merged", split)))
            split_folders.setdefault(split, []).append(display_path(folder))
            events.extend(_class_folder_events(walker, path, split))
    else:
        kind = "pool"
        if not dirs:
            raise no_class_folders(display_path(str(root)), len(stray_top))
        split_folders[""] = [""]
        classes[""] = []
        events.extend(_class_folder_events(walker, str(root), ""))

    # claim every class folder before walking any, so a link between them is reported, not walked
    candidates = [ev[1:] for ev in events if ev[0] == "class"]
    verdicts = iter(walker.admit_all(candidates, is_class=True))
    for ev in events:
        if ev[0] == "issue":
            issues.append(ev[1])
            continue
        _, path, _, split, label = ev
        refused = next(verdicts)
        if refused is not None:
            issues.append(refused)
            continue
        if label not in classes.setdefault(split, []):
            classes[split].append(label)
        files = walker.walk(path, split, label)
        if not files:
            issues.append(WalkIssue("empty_class", walker.rel(path), "", split, label))
        entries.extend(FileEntry(walker.rel(f), f, split, label) for f in files)

    if kind == "splits":
        for folder in plan.unused:
            issues.append(WalkIssue("unknown_folder", display_path(folder), UNKNOWN_FOLDER_DETAIL))
        for e in stray_top:
            issues.append(walker.stray(e, "file outside any split or class folder; not scanned"))
        for wrapper in plan.wrappers:
            issues.extend(_wrapper_strays(walker, root / wrapper))
        for e in top:
            if is_hidden_or_system(e.name):
                issues.append(WalkIssue("hidden", walker.rel(e.path)))
    for split in classes:
        classes[split].sort()
    if not entries:
        raise nothing_found(display_path(str(root)), kind,
                            [display_path(f) for s in SPLIT_ORDER for f in plan.splits.get(s, [])],
                            classes, issues)
    entries = [FileEntry(e.rel, e.abs_path, e.split, e.label, e.group, i) for i, e in enumerate(entries)]
    splits = [s for s in SPLIT_ORDER if s in split_folders] if kind == "splits" else [""]
    return Layout(kind, root, splits, split_folders, classes, entries, issues,
                  reading=[display_path(r) for r in plan.reading])


UNKNOWN_FOLDER_DETAIL = ("not named like a split (train/training/trn, val/valid/validation/dev, "
                         "test/testing/eval/holdout, with affixes); not scanned")


def _wrapper_strays(walker: _Walker, folder: Path) -> list[WalkIssue]:
    """Files (and hidden entries) directly in a wrapper folder read through: not scanned."""
    try:
        items = _list_dir(folder)
    except OSError:
        return []
    out = []
    for e in items:
        if is_hidden_or_system(e.name):
            out.append(WalkIssue("hidden", walker.rel(e.path)))
        elif not _is_dir(e):
            out.append(walker.stray(e, "file outside any split or class folder; not scanned"))
    return out


def parse_manifest(text: str, name: str) -> list[dict[str, str]]:
    """Rows of a manifest's CSV text (header names lower-cased); DatasetError when it is unusable."""
    try:
        reader = csv.DictReader(io_module.StringIO(text, newline=""))
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if "path" not in header or "label" not in header:
            raise DatasetError(f"manifest {name} needs columns 'path' and 'label' "
                               f"(found: {', '.join(header) or 'no header'})")
        reader.fieldnames = header
        return list(reader)
    except csv.Error as exc:
        raise DatasetError(f"manifest {name} is not valid CSV: {exc}") from None


def manifest_layout(rows: list[dict[str, str]], name: str, root, locate) -> Layout:
    """The Layout of manifest rows, shared by local and remote manifests.

    `locate(raw_path)` returns (path to open, path relative to the root for display, exists)."""
    issues: list[WalkIssue] = []
    entries: list[FileEntry] = []
    classes: dict[str, list[str]] = {}
    split_folders: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        raw_path = (row.get("path") or "").strip()
        label = (row.get("label") or "").strip()
        if not raw_path or not label:
            issues.append(WalkIssue("manifest_bad_row", f"line {i}", "empty path or label"))
            continue
        raw_split = (row.get("split") or "").strip()
        split = canonical_split(raw_split) if raw_split else ""
        if split is None:
            issues.append(WalkIssue("unknown_split_value", f"line {i}",
                                    f"split {raw_split!r} is not train/val/test; row not scanned"))
            continue
        if "\0" in raw_path:  # no file can have this name, and os functions raise ValueError on it
            issues.append(WalkIssue("manifest_missing", display_path(raw_path.replace("\0", "\\x00")),
                                    f"line {i}: the path contains a NUL byte, so no file can have it",
                                    split, label))
            continue
        full, rel, exists = locate(raw_path)
        if not exists:
            issues.append(WalkIssue("manifest_missing", rel, f"line {i}: file not found", split, label))
            continue
        same = full if is_remote(str(full)) else os.path.normpath(os.path.abspath(full))
        if same in first_line:  # one sample listed twice: a repeated row, not "identical files"
            issues.append(WalkIssue("manifest_duplicate_row", rel, f"line {i} repeats line {first_line[same]}",
                                    split, label))
            continue
        first_line[same] = i
        split_folders.setdefault(split, [raw_split])
        if label not in classes.setdefault(split, []):
            classes[split].append(label)
        entries.append(FileEntry(rel, full, split, label, (row.get("group") or "").strip(), len(entries)))
    if not entries:
        raise DatasetError(f"manifest {name} lists no existing files")
    named = sorted(label for label in classes.get("", []) if split_of_name(label))
    if named and set(split_folders) == {""}:
        issues.append(WalkIssue("split_named_classes", name, (
            f"label(s) {', '.join(map(repr, named))} are named like splits, and the manifest has no split "
            "column: if they are splits, add a 'split' column and give each row its class label")))
    for split in classes:
        classes[split].sort()
    present = set(split_folders)
    if present == {""}:
        splits = [""]
    else:
        splits = [s for s in SPLIT_ORDER if s in present] + ([""] if "" in present else [])
    return Layout("manifest", root, splits, split_folders, classes, entries, issues, manifest=name)


def _from_manifest(root: Path | None, manifest: Path) -> Layout:
    name = display_path(str(manifest))
    if not manifest.is_file():
        raise DatasetError(f"manifest not found or not a file: {name}")
    base = manifest.resolve().parent
    root = check_root(root) if root is not None else base
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"manifest {name} is not UTF-8 text") from None
    except OSError as exc:
        raise DatasetError(f"cannot read manifest {name}: {exc.strerror or exc}") from None
    root_real = os.path.realpath(root)

    def locate(raw_path: str) -> tuple[str, str, bool]:
        full = raw_path if os.path.isabs(raw_path) else os.path.join(base, raw_path)
        real = os.path.realpath(full)
        rel = os.path.relpath(real if real.startswith(root_real + os.sep) else full, root)
        # a named pipe or a device counts as found: the index's stat reports it as unreadable, unopened
        exists = os.path.exists(full) and not os.path.isdir(full)
        return full, display_path(rel).replace(os.sep, "/"), exists

    layout = manifest_layout(parse_manifest(text, name), name, root, locate)
    # rows that reach outside the manifest's folder are read, but said: a manifest moved or shared
    # with another machine silently reads other files, and a scan of "this folder" reads beyond it
    base_real = os.path.realpath(base)
    for e in layout.entries:
        if not is_inside(e.abs_path, base_real):
            layout.issues.append(WalkIssue("manifest_outside_folder", e.rel,
                                           "outside the manifest's folder", e.split, e.label))
    return layout


def issue_dict(issue: WalkIssue) -> dict:
    return asdict(issue)
