"""Find the files of a dataset and what split and class each belongs to, without opening any image.

Three layouts are recognised, and the one found is reported:

* ``splits``:  ROOT/<split>/<class>/<files>, split folders matched case-insensitively against
  train/training, val/valid/validation, test/testing. Other top-level folders are reported, not
  guessed, and their files are not scanned.
* ``pool``:    ROOT/<class>/<files>, one pool with no split.
* ``manifest``: a CSV with columns ``path,label`` and optional ``split``, ``group``; paths are
  relative to the CSV file.

Class folders are walked recursively, as Keras' ``image_dataset_from_directory`` does. Hidden and
system files are skipped and reported; symlinks are followed when they stay inside ROOT and do not
loop, and reported otherwise. Root-level problems raise :class:`DatasetError`; everything else is
recorded as a :class:`WalkIssue` for the integrity checks to turn into findings.
"""

from __future__ import annotations

import csv
import io as io_module
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dsaudit.index.io import is_remote

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
SPLIT_ORDER = ("train", "val", "test")
SYSTEM_NAMES = {"thumbs.db", "desktop.ini", "__macosx", "$recycle.bin", "system volume information"}


class DatasetError(Exception):
    """The dataset root cannot be used at all (missing, not a folder, unreadable, no images).

    The CLI prints the message as one line and exits with code 2."""


def display_path(path: str) -> str:
    """A printable, JSON-safe form of an OS path: undecodable bytes become backslash escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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

    kind: str           # hidden | symlink_loop | symlink_outside | symlink_broken | unknown_folder |
                        # stray_file | empty_class | unreadable_dir | duplicate_split_folder |
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
        }


class _Walker:
    """Recursive, loop-safe walk of one class folder."""

    def __init__(self, root: Path, issues: list[WalkIssue]):
        self.root = root
        self.root_real = os.path.realpath(root)
        self.issues = issues

    def rel(self, path: str) -> str:
        return display_path(os.path.relpath(path, self.root)).replace(os.sep, "/")

    def inside_root(self, real: str) -> bool:
        return real == self.root_real or real.startswith(self.root_real + os.sep)

    def walk(self, folder: str, split: str, label: str) -> list[str]:
        """Return the sample files under `folder` in loader order (sorted names, depth-first)."""
        files: list[str] = []
        try:
            ancestors = {self._dir_key(folder)}
        except OSError as exc:
            self.issues.append(WalkIssue("unreadable_dir", self.rel(folder), str(exc.strerror or exc),
                                         split, label))
            return files
        self._walk(folder, split, label, files, ancestors)
        return files

    @staticmethod
    def _dir_key(path: str) -> tuple[int, int]:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)

    def _walk(self, folder: str, split: str, label: str, files: list[str],
              ancestors: set[tuple[int, int]]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.issues.append(WalkIssue("unreadable_dir", self.rel(folder),
                                         str(exc.strerror or exc), split, label))
            return
        for entry in entries:
            path = entry.path
            if is_hidden_or_system(entry.name):
                self.issues.append(WalkIssue("hidden", self.rel(path), "", split, label))
                continue
            try:
                is_link = entry.is_symlink()
                if is_link:
                    real = os.path.realpath(path)
                    try:
                        st = os.stat(path)
                    except OSError as exc:
                        kind = "symlink_loop" if getattr(exc, "errno", None) == 40 else "symlink_broken"
                        self.issues.append(WalkIssue(kind, self.rel(path),
                                                     f"points to {display_path(os.readlink(path))}",
                                                     split, label))
                        continue
                    if not self.inside_root(real):
                        self.issues.append(WalkIssue("symlink_outside", self.rel(path),
                                                     f"points outside ROOT to {display_path(real)}",
                                                     split, label))
                    is_dir = stat.S_ISDIR(st.st_mode)
                else:
                    is_dir = entry.is_dir(follow_symlinks=False)
            except OSError as exc:
                self.issues.append(WalkIssue("unreadable_dir", self.rel(path), str(exc), split, label))
                continue
            if is_dir:
                try:
                    key = self._dir_key(path)
                except OSError as exc:
                    self.issues.append(WalkIssue("unreadable_dir", self.rel(path), str(exc), split, label))
                    continue
                if key in ancestors:
                    self.issues.append(WalkIssue("symlink_loop", self.rel(path),
                                                 "links back to a folder above it; not followed",
                                                 split, label))
                    continue
                self._walk(path, split, label, files, ancestors | {key})
            else:
                files.append(path)


def _list_dir(path: Path) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks: a linked class folder is a class folder
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


def discover(root: Path, manifest: Path | None = None) -> Layout:
    """Work out the layout of ROOT (or read the manifest) and list every sample file."""
    if manifest is not None and not is_remote(str(manifest)):
        return _from_manifest(root, manifest)
    if is_remote(str(root)) or (manifest is not None and is_remote(str(manifest))):
        from dsaudit.index import remote

        return remote.discover(str(root) if root is not None else None,
                               str(manifest) if manifest is not None else None)
    root = check_root(root)
    try:
        top = _list_dir(root)
    except OSError as exc:
        raise DatasetError(f"cannot list dataset root {display_path(str(root))}: "
                           f"{exc.strerror or exc}") from None
    issues: list[WalkIssue] = []
    walker = _Walker(root, issues)
    dirs = [e for e in top if not is_hidden_or_system(e.name) and _is_dir(e)]
    split_dirs = [(SPLIT_ALIASES[e.name.strip().lower()], e) for e in dirs
                  if e.name.strip().lower() in SPLIT_ALIASES]
    stray_top = [e for e in top if not is_hidden_or_system(e.name) and not _is_dir(e)]

    entries: list[FileEntry] = []
    classes: dict[str, list[str]] = {}
    split_folders: dict[str, list[str]] = {}

    def add_class_folders(parent: str, split: str) -> None:
        try:
            items = _list_dir(Path(parent))
        except OSError as exc:
            issues.append(WalkIssue("unreadable_dir", walker.rel(parent), str(exc.strerror or exc), split))
            return
        for e in items:
            if is_hidden_or_system(e.name):
                issues.append(WalkIssue("hidden", walker.rel(e.path), "", split))
            elif _is_dir(e):
                label = display_path(e.name)
                if label not in classes.setdefault(split, []):
                    classes[split].append(label)
                files = walker.walk(e.path, split, label)
                if not files:
                    issues.append(WalkIssue("empty_class", walker.rel(e.path), "", split, label))
                for f in files:
                    entries.append(FileEntry(walker.rel(f), f, split, label))
            else:
                issues.append(WalkIssue("stray_file", walker.rel(e.path),
                                        "file outside any class folder; not scanned", split))

    if split_dirs:
        kind = "splits"
        for split, e in sorted(split_dirs, key=lambda x: (SPLIT_ORDER.index(x[0]), x[1].name)):
            if split in split_folders:
                issues.append(WalkIssue("duplicate_split_folder", walker.rel(e.path),
                                        f"also the {split!r} split as {split_folders[split][0]!r}; merged",
                                        split))
            split_folders.setdefault(split, []).append(display_path(e.name))
            add_class_folders(e.path, split)
        for e in dirs:
            if e.name.strip().lower() not in SPLIT_ALIASES:
                issues.append(WalkIssue("unknown_folder", walker.rel(e.path),
                                        "not a recognised split name (train/training, val/valid/"
                                        "validation, test/testing); not scanned"))
        for e in stray_top:
            issues.append(WalkIssue("stray_file", walker.rel(e.path),
                                    "file outside any split or class folder; not scanned"))
        for e in top:
            if is_hidden_or_system(e.name):
                issues.append(WalkIssue("hidden", walker.rel(e.path)))
    else:
        kind = "pool"
        if not dirs:
            if stray_top:
                raise DatasetError(
                    f"found {len(stray_top)} files directly in {display_path(str(root))} but no class "
                    "folders; expected ROOT/<class>/<files> or ROOT/<split>/<class>/<files> "
                    "(or describe the files with --manifest labels.csv)")
            raise DatasetError(f"no class folders and no images in {display_path(str(root))}")
        split_folders[""] = [""]
        classes[""] = []
        add_class_folders(str(root), "")
    for split in classes:
        classes[split].sort()
    if not entries:
        raise DatasetError(f"no files found in the class folders of {display_path(str(root))}")
    entries = [FileEntry(e.rel, e.abs_path, e.split, e.label, e.group, i) for i, e in enumerate(entries)]
    splits = [s for s in SPLIT_ORDER if s in split_folders] if kind == "splits" else [""]
    return Layout(kind, root, splits, split_folders, classes, entries, issues)


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
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        raw_path = (row.get("path") or "").strip()
        label = (row.get("label") or "").strip()
        if not raw_path or not label:
            issues.append(WalkIssue("manifest_bad_row", f"line {i}", "empty path or label"))
            continue
        raw_split = (row.get("split") or "").strip()
        split = SPLIT_ALIASES.get(raw_split.lower(), None) if raw_split else ""
        if split is None:
            issues.append(WalkIssue("unknown_split_value", f"line {i}",
                                    f"split {raw_split!r} is not train/val/test; row not scanned"))
            continue
        full, rel, exists = locate(raw_path)
        if not exists:
            issues.append(WalkIssue("manifest_missing", rel, f"line {i}: file not found", split, label))
            continue
        split_folders.setdefault(split, [raw_split])
        if label not in classes.setdefault(split, []):
            classes[split].append(label)
        entries.append(FileEntry(rel, full, split, label, (row.get("group") or "").strip(), len(entries)))
    if not entries:
        raise DatasetError(f"manifest {name} lists no existing files")
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
        return full, display_path(rel).replace(os.sep, "/"), os.path.isfile(full)

    return manifest_layout(parse_manifest(text, name), name, root, locate)


def issue_dict(issue: WalkIssue) -> dict:
    return asdict(issue)
