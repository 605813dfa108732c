"""Datasets on object storage (s3://, gs://, az://, ... ) through fsspec: their layout, read-only.

The same layouts as :mod:`dsaudit.index.layout` are recognised. Object stores have no real
folders, so one recursive listing of the root prefix is turned into a virtual tree, and that tree is
walked in exactly the order the local walk uses (sorted names, depth-first), with the same rules for
split aliases, hidden and system names, stray files and unknown folders. A scan of an S3 copy
therefore lists the same files, in the same order, with the same relative paths, as a scan of the
local folder. The listing remembers each object's size and version stamp; reading objects is
:mod:`dsaudit.index.objects`.
"""

from __future__ import annotations

import posixpath

from dsaudit.index.errors import DatasetError
from dsaudit.index.layout_model import (UNKNOWN_FOLDER_DETAIL, FileEntry, Layout, WalkIssue, check_chosen_splits,
                                        is_hidden_or_system, manifest_layout, no_class_folders, nothing_found,
                                        parse_manifest, read_plan)
from dsaudit.index.splits import SPLIT_ORDER
from dsaudit.index.objects import _remember, _short, _split_url, filesystem, stat, version_stamp


# --------------------------------------------------------------------------------------- discover

class _Tree:
    """A folder of the virtual tree built from object keys: name -> _Tree (folder) or None (file)."""

    __slots__ = ("children",)

    def __init__(self) -> None:
        self.children: dict[str, _Tree | None] = {}

    def add(self, parts: list[str], is_dir: bool) -> None:
        node = self
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            if last and not is_dir:
                if name not in node.children:      # a key that is also a prefix stays a folder
                    node.children[name] = None
                return
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = _Tree()
            node = child

    def items(self) -> list[tuple[str, "_Tree | None"]]:
        return sorted(self.children.items())


def _list(fs, root_path: str, root_url: str) -> _Tree:
    """One recursive listing of the prefix as a virtual tree; remembers each object's stamp."""
    try:
        fs.invalidate_cache(root_path)  # a rescan in the same process must see the store as it is now
        exists = fs.exists(root_path)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"cannot list dataset root {root_url}: {_short(exc)}") from None
    if not exists:
        raise DatasetError(f"dataset root does not exist: {root_url}")
    try:
        listing = fs.find(root_path, withdirs=True, detail=True)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"cannot list dataset root {root_url}: {_short(exc)}") from None
    if not listing or set(k.rstrip("/") for k in listing) == {root_path}:
        try:
            info = fs.info(root_path)
        except Exception:  # noqa: BLE001
            info = {}
        if info.get("type") == "file":
            raise DatasetError(f"dataset root is not a folder: {root_url} "
                               "(give the prefix that holds the class or split folders, or use --manifest)")
    tree = _Tree()
    prefix = root_path + "/" if root_path else ""
    base_url = root_url.rstrip("/")
    for key, info in listing.items():
        key = key.rstrip("/")
        if not key.startswith(prefix) or key == root_path:
            continue
        rel = key[len(prefix):]
        parts = [p for p in rel.split("/") if p]
        if not parts:
            continue
        is_dir = info.get("type") == "directory"
        tree.add(parts, is_dir)
        if not is_dir:
            _remember(f"{base_url}/{'/'.join(parts)}", int(info.get("size") or 0), version_stamp(info))
    return tree


def discover(root_url: str | None, manifest_url: str | None = None,
             chosen: dict[str, list[str]] | None = None) -> Layout:
    """The layout of a remote prefix (or of a remote CSV manifest), like layout.discover.

    The walk below mirrors layout.discover step for step (same order of entries and issues);
    tests/test_remote.py compares the two on the same files, so any drift fails a test."""
    if manifest_url is not None:
        return _from_manifest(root_url, manifest_url)
    assert root_url is not None
    fs, root_path = filesystem(root_url)
    base_url = root_url.rstrip("/")
    tree = _list(fs, root_path, base_url)

    issues: list[WalkIssue] = []
    entries: list[FileEntry] = []
    classes: dict[str, list[str]] = {}
    split_folders: dict[str, list[str]] = {}

    def walk(node: _Tree, rel: str, split: str, label: str, files: list[str]) -> None:
        for name, child in node.items():
            path = f"{rel}/{name}"
            if is_hidden_or_system(name):
                issues.append(WalkIssue("hidden", path, "", split, label))
            elif child is None:
                files.append(path)
            else:
                walk(child, path, split, label, files)

    def add_class_folders(node: _Tree, rel: str, split: str) -> None:
        for name, child in node.items():
            path = f"{rel}/{name}" if rel else name
            if is_hidden_or_system(name):
                issues.append(WalkIssue("hidden", path, "", split))
            elif child is not None:
                if name not in classes.setdefault(split, []):
                    classes[split].append(name)
                files: list[str] = []
                walk(child, path, split, name, files)
                if not files:
                    issues.append(WalkIssue("empty_class", path, "", split, name))
                entries.extend(FileEntry(f, f"{base_url}/{f}", split, name) for f in files)
            else:
                issues.append(WalkIssue("stray_file", path, "file outside any class folder; not scanned",
                                        split))

    top = tree.items()
    dirs = [(n, c) for n, c in top if not is_hidden_or_system(n) and c is not None]
    stray_top = [n for n, c in top if not is_hidden_or_system(n) and c is None]

    def node_at(rel: str) -> _Tree | None:
        node: _Tree | None = tree
        for part in (p for p in rel.split("/") if p):
            node = node.children.get(part) if node is not None else None
        return node

    def lister(rel: str) -> list[str] | None:
        node = node_at(rel)
        return None if node is None else [n for n, c in node.items() if c is not None and not is_hidden_or_system(n)]

    def sizes(rel: str) -> int:
        return sum(len((node_at(f"{rel}/{n}") or _Tree()).children) for n in lister(rel) or [])

    if chosen:
        check_chosen_splits(lister, chosen, base_url)
    plan = read_plan(lister, [n for n, _ in dirs], chosen, sizes)
    issues.extend(WalkIssue(kind, path, detail) for kind, path, detail in plan.warnings)
    if plan.splits:
        kind = "splits"
        for split in SPLIT_ORDER:
            for folder in plan.splits.get(split, []):
                if split in split_folders:
                    issues.append(WalkIssue("duplicate_split_folder", folder,
                                            f"also the {split!r} split as {split_folders[split][0]!r}; merged",
                                            split))
                split_folders.setdefault(split, []).append(folder)
                add_class_folders(node_at(folder) or _Tree(), folder, split)
        for folder in plan.unused:
            issues.append(WalkIssue("unknown_folder", folder, UNKNOWN_FOLDER_DETAIL))
        for name in stray_top:
            issues.append(WalkIssue("stray_file", name, "file outside any split or class folder; not scanned"))
        for wrapper in plan.wrappers:
            for name, child in (node_at(wrapper) or _Tree()).items():
                if is_hidden_or_system(name):
                    issues.append(WalkIssue("hidden", f"{wrapper}/{name}"))
                elif child is None:
                    issues.append(WalkIssue("stray_file", f"{wrapper}/{name}",
                                            "file outside any split or class folder; not scanned"))
        for name, _ in top:
            if is_hidden_or_system(name):
                issues.append(WalkIssue("hidden", name))
    else:
        kind = "pool"
        if not dirs:
            raise no_class_folders(base_url, len(stray_top))
        split_folders[""] = [""]
        classes[""] = []
        add_class_folders(tree, "", "")
    for split in classes:
        classes[split].sort()
    if not entries:
        raise nothing_found(base_url, kind, [f for sp in SPLIT_ORDER for f in plan.splits.get(sp, [])], classes, issues)
    entries = [FileEntry(e.rel, e.abs_path, e.split, e.label, e.group, i) for i, e in enumerate(entries)]
    splits = [s for s in SPLIT_ORDER if s in split_folders] if kind == "splits" else [""]
    # root without the trailing slash: s3://b/x and s3://b/x/ share one cache and one report name
    return Layout(kind, base_url, splits, split_folders, classes, entries, issues,  # type: ignore[arg-type]
                  reading=list(plan.reading))


def _from_manifest(root_url: str | None, manifest_url: str) -> Layout:
    """A CSV manifest on object storage; relative paths resolve against the CSV's prefix."""
    fs, manifest_path = filesystem(manifest_url)
    try:
        raw = fs.cat_file(manifest_path)
    except FileNotFoundError:
        raise DatasetError(f"manifest not found or not a file: {manifest_url}") from None
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"cannot read manifest {manifest_url}: {_short(exc)}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"manifest {manifest_url} is not UTF-8 text") from None
    rows = parse_manifest(text, manifest_url)
    protocol, _ = _split_url(manifest_url)
    base_url = manifest_url.rsplit("/", 1)[0]
    root = (root_url or base_url).rstrip("/")
    # One listing of the manifest's prefix tells which rows exist (and their stamps).
    _, base_path = filesystem(base_url)
    present: set[str] = set()
    try:
        listing = fs.find(base_path, detail=True)
    except Exception:  # noqa: BLE001 - rows are then checked one by one
        listing = {}
    for key, info in listing.items():
        present.add(key.rstrip("/"))
        _remember(f"{protocol}://{key.rstrip('/')}", int(info.get("size") or 0), version_stamp(info))

    def locate(raw_path: str) -> tuple[str, str, bool]:
        full = raw_path if "://" in raw_path else posixpath.normpath(f"{base_url}/{raw_path}").replace(":/", "://", 1)
        rel = full[len(root) + 1:] if full.startswith(root + "/") else full
        if _split_url(full)[1] in present:
            return full, rel, True
        if listing and full.startswith(base_url + "/"):
            return full, rel, False  # under the listed prefix but not listed: missing
        try:
            stat(full)
            return full, rel, True
        except OSError:
            return full, rel, False

    return manifest_layout(rows, manifest_url, root, locate)
