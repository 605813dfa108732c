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

import errno
import os
import stat
from pathlib import Path
from typing import Callable

from dsaudit.index.errors import DatasetError  # noqa: F401 (where the callers look for it)
from dsaudit.index.io import is_remote, special_file_type
# the model's names are imported from here too (layout.Layout, layout.display_path, ...)
from dsaudit.index.layout_model import (SYSTEM_NAMES, UNKNOWN_FOLDER_DETAIL, FileEntry, Layout,  # noqa: F401
                                        WalkIssue, check_chosen_splits, display_path, is_hidden_or_system,
                                        is_inside, issue_dict, manifest_layout, no_class_folders, nothing_found,
                                        parse_manifest, read_plan, within)
from dsaudit.index.splits import SPLIT_ORDER


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


