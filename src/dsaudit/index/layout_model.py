"""What a layout is, and the rules local and remote discovery share: the Layout of a dataset, its
sample files (FileEntry) and what the walk noticed (WalkIssue); printable paths and the inside-ROOT
test; the one-line errors of an empty root; the split plan of --split or of names and shapes; and
manifests. index/layout.py walks local folders and index/remote.py lists object stores, both with
these (so neither imports the other's walk: the remote discovery no longer imports layout.py).
"""

from __future__ import annotations

import csv
import io as io_module
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dsaudit.index.errors import DatasetError
from dsaudit.index.io import is_remote
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


UNKNOWN_FOLDER_DETAIL = ("not named like a split (train/training/trn, val/valid/validation/dev, "
                         "test/testing/eval/holdout, with affixes); not scanned")


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


def issue_dict(issue: WalkIssue) -> dict:
    return asdict(issue)
