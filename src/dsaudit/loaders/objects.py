"""The files and labels of loader objects a user already has, for ``dsaudit.scan_datasets``.

Read by duck typing on attributes, so neither TensorFlow nor PyTorch is imported (a user who passes
their objects has imported the framework already):

* a Keras dataset from ``image_dataset_from_directory`` (``file_paths``, ``class_names``; the label
  of a file is its class folder, as ``labels="inferred"`` makes it). The attributes are lost by
  ``.map``/``.batch``/``.prefetch``, so pass the dataset the function returned;
* a PyTorch ``ImageFolder`` / ``DatasetFolder`` (``samples`` as (path, class index), ``classes``,
  ``root``), a ``Subset`` (``dataset`` and ``indices``: what ``random_split`` returns, nested
  subsets too) and a ``ConcatDataset`` (``datasets``).

The result is manifest rows (path, label, split) that go through the index's manifest machinery
(``layout.manifest_layout``): one pipeline, whatever the source. The layout is a manifest whose
name starts with ``python:``; its row order is the objects' own, not a file a script splits by
position, so DSA312 (manifest rows clustered) does not apply to it.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

SOURCE_PREFIX = "python:"


def _error(message: str) -> Exception:
    from dsaudit.index.layout import DatasetError

    return DatasetError(message)


def _keras_samples(obj: Any, split: str) -> list[tuple[str, str]]:
    paths = [os.fspath(p.decode() if isinstance(p, bytes) else p) for p in obj.file_paths]
    classes = [str(c) for c in (getattr(obj, "class_names", None) or [])]
    if not paths:
        return []
    if not classes:
        raise _error(f"{split}: the Keras dataset has file_paths but no class_names (made with labels=None?); "
                     "dsaudit needs each file's class")
    directory = os.path.dirname(os.path.commonpath(paths)) if len(paths) == 1 else os.path.commonpath(paths)
    wanted = set(classes)
    while True:  # the folder given to image_dataset_from_directory: each file is <it>/<class>/...
        if all(_component_after(p, directory) in wanted for p in paths):
            break
        parent = os.path.dirname(directory)
        if parent == directory:
            raise _error(f"{split}: cannot tell the class of each file from the Keras dataset's file_paths and "
                         f"class_names {classes[:5]} (labels other than the class folders?)")
        directory = parent
    return [(p, _component_after(p, directory)) for p in paths]


def _component_after(path: str, directory: str) -> str:
    rel = os.path.relpath(path, directory)
    return rel.split(os.sep, 1)[0] if os.sep in rel else ""


def _folder_samples(obj: Any, split: str) -> list[tuple[str, str]]:
    classes = list(getattr(obj, "classes", None) or [])
    out = []
    for item in obj.samples:
        path, target = item[0], item[1]
        try:
            label = str(classes[int(target)]) if classes else str(target)
        except (IndexError, TypeError, ValueError):
            label = str(target)
        out.append((os.fspath(path), label))
    return out


def samples_of(obj: Any, split: str, depth: int = 0) -> list[tuple[str, str]]:
    """(file path, label) of every sample of a loader object, in its order."""
    if depth > 50:
        raise _error(f"{split}: datasets nested more than 50 deep")
    if hasattr(obj, "file_paths"):
        return _keras_samples(obj, split)
    if hasattr(obj, "dataset") and hasattr(obj, "indices"):  # torch.utils.data.Subset (random_split)
        inner = samples_of(obj.dataset, split, depth + 1)
        try:
            return [inner[int(i)] for i in obj.indices]
        except (IndexError, TypeError, ValueError):
            raise _error(f"{split}: the Subset's indices do not fit its dataset of {len(inner)} samples") from None
    if hasattr(obj, "datasets") and not hasattr(obj, "samples"):  # torch.utils.data.ConcatDataset
        return [s for d in obj.datasets for s in samples_of(d, split, depth + 1)]
    if hasattr(obj, "samples"):  # torchvision ImageFolder / DatasetFolder
        return _folder_samples(obj, split)
    raise _error(f"{split}: {type(obj).__name__} is not a dataset dsaudit can read: pass what "
                 "image_dataset_from_directory returned (file_paths, class_names), or a torchvision "
                 "ImageFolder (samples, classes) or a Subset / ConcatDataset of one")


def _roots(obj: Any) -> Iterable[str]:
    """Folders the objects name themselves (ImageFolder.root), to root the layout there."""
    if hasattr(obj, "root") and isinstance(getattr(obj, "root"), (str, os.PathLike)):
        yield os.fspath(obj.root)
    for attr in ("dataset",):
        if hasattr(obj, attr):
            yield from _roots(getattr(obj, attr))
    for d in getattr(obj, "datasets", None) or []:
        yield from _roots(d)


def layout_from_datasets(datasets: dict[str, Any]):
    """The Layout of loader objects by split ({"train": ..., "val": ..., "test": ...}), built by
    the manifest machinery from their file paths and labels."""
    from dsaudit.index.layout import check_root, display_path, manifest_layout

    rows: list[dict[str, str]] = []
    folders: list[str] = []
    for split, obj in datasets.items():
        samples = samples_of(obj, split)
        if not samples:
            raise _error(f"{split}: the dataset holds no samples")
        rows += [{"path": os.path.abspath(p), "label": label, "split": split} for p, label in samples]
        folders += [os.path.abspath(r) for r in _roots(obj)]
    parents = [os.path.dirname(r["path"]) for r in rows] + folders
    root = os.path.commonpath(parents)
    from pathlib import Path

    root_path = check_root(Path(root))
    root_real = os.path.realpath(root)

    def locate(raw_path: str) -> tuple[str, str, bool]:
        real = os.path.realpath(raw_path)
        rel = os.path.relpath(real if real.startswith(root_real + os.sep) else raw_path, root)
        exists = os.path.exists(raw_path) and not os.path.isdir(raw_path)
        return raw_path, display_path(rel).replace(os.sep, "/"), exists

    name = SOURCE_PREFIX + " ".join(f"{split}={type(obj).__name__}" for split, obj in datasets.items())
    return manifest_layout(rows, name, root_path, locate)
