"""DSA0xx: can every file be read as the image its folder and name promise?

File-level problems (unreadable, truncated, empty, bombs) get one finding per file, so baselines and
JUnit name each file. Systematic problems (a wrong extension on a thousand files, mixed colour
modes) get one finding listing all files, so a report stays readable.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from typing import Iterable

import pandas as pd

from dsaudit.checks.base import Check, CheckContext
from dsaudit.findings import Finding, Severity
from dsaudit.index.records import EXTENSION_FORMATS, IMAGE_EXTENSIONS

EXAMPLES = 20  # how many per-file details an aggregated finding keeps in its evidence


def _where(row) -> str:
    return f"{row.split}/{row.label}" if row.split else row.label


def _size_examples(rows) -> list[dict]:
    return [{"path": r.path, "width": int(r.width), "height": int(r.height)}
            for r in rows.head(EXAMPLES).itertuples()]


def _issues(ctx: CheckContext, *kinds: str):
    return [i for i in ctx.index.layout.issues if i.kind in kinds]


class UnreadableImage(Check):
    """An image file that cannot be read or decoded.

    Why: A loader either crashes on it mid-epoch (tf.io.decode_image raises, Keras stops training) or,
    with errors ignored, silently drops it, so the class counts you think you have are not the ones
    you train on.
    Fix: Re-export or re-download the file from its source, or delete it. `dsaudit scan` lists each
    one with the decoder's error.
    """

    id = "DSA001"
    name = "integrity.unreadable-image"
    severity = Severity.ERROR

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        t = ctx.index.table
        bad = t[((t["kind"] == "broken-image") & ~t["truncated"]) | (t["kind"] == "unreadable")]
        for row in bad.itertuples():
            yield self.finding(
                f"Cannot decode {row.path}",
                f"{row.path} ({_where(row)}) could not be read as an image: {row.error}",
                paths=[row.path],
                evidence={"error": row.error, "format": row.format, "bytes": int(row.bytes)})


class TruncatedImage(Check):
    """An image whose data stops before the end (an interrupted download or copy).

    Why: Decoders either raise ("image file is truncated") or fill the missing part with grey, so the
    model trains on a half-grey image with a confident label.
    Fix: Copy the file again from its source and compare checksums; delete it if no good copy exists.
    """

    id = "DSA002"
    name = "integrity.truncated-image"
    severity = Severity.ERROR

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        t = ctx.index.table
        for row in t[t["truncated"]].itertuples():
            yield self.finding(
                f"Truncated image {row.path}",
                f"{row.path} ({_where(row)}) ends early: {row.error}",
                paths=[row.path], evidence={"error": row.error, "format": row.format,
                                            "bytes": int(row.bytes)})


class EmptyFile(Check):
    """A zero-byte file in a class folder.

    Why: It counts as a sample for any loader that lists files, then fails to decode.
    Fix: Delete it, or restore the real file from its source.
    """

    id = "DSA003"
    name = "integrity.empty-file"
    severity = Severity.ERROR

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        t = ctx.index.table
        for row in t[t["kind"] == "empty"].itertuples():
            yield self.finding(f"Empty file {row.path}", f"{row.path} ({_where(row)}) has 0 bytes.",
                               paths=[row.path])


class NonImageFile(Check):
    """A file in a class folder that is not an image at all (text, archive, PDF, ...).

    Why: Loaders that filter by extension skip it, loaders that do not crash on it; either way it is
    not a training sample and often a sign of a bad export (a CSV or a zip unpacked into the wrong
    place).
    Fix: Move it out of the class folders.
    """

    id = "DSA004"
    name = "integrity.non-image-file"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        t = ctx.index.table
        for row in t[t["kind"] == "non-image"].itertuples():
            what = row.format.lower() if row.format else "unknown data"
            yield self.finding(f"Not an image: {row.path}",
                               f"{row.path} ({_where(row)}) looks like {what}, not an image.",
                               paths=[row.path], evidence={"detected": row.format or "unknown",
                                                           "extension": row.ext})


class ExtensionMismatch(Check):
    """Files whose extension does not match their real format (a PNG named .jpg).

    Why: Format-specific decoders fail on them (tf.io.decode_jpeg on a PNG raises), extension
    filters skip them (Keras' loaders only take jpeg/jpg/png/bmp/gif), and a model can learn the
    format difference as a shortcut if it differs by class.
    Fix: Rename the files to their real format, or re-encode them all to one format.
    """

    id = "DSA005"
    name = "integrity.extension-mismatch"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        t = ctx.index.table
        imgs = t[(t["kind"].isin(["image", "broken-image"])) & (t["format"] != "")]
        mism = imgs[[fmt not in EXTENSION_FORMATS.get(ext, {fmt})
                     for ext, fmt in zip(imgs["ext"], imgs["format"])]]
        no_ext = imgs[imgs["ext"] == ""]
        for (ext, fmt), grp in pd.concat([mism, no_ext]).groupby(["ext", "format"], sort=True):
            shown = f".{ext}" if ext else "no extension"
            per_class = grp.groupby(["split", "label"]).size()
            yield self.finding(
                f"{len(grp)} {fmt} file(s) with {shown}",
                f"{len(grp)} file(s) named {shown} are really {fmt}"
                + (f", e.g. {grp['path'].iloc[0]}" if len(grp) else "") + ".",
                paths=grp["path"].tolist(), subject=f"{ext}->{fmt}",
                evidence={"extension": ext, "format": fmt, "count": int(len(grp)),
                          "per_class": {f"{s}/{lab}" if s else lab: int(n) for (s, lab), n in per_class.items()}})


class MixedColourModes(Check):
    """Images stored with different colour modes (greyscale L, RGB, RGBA, palette, 16-bit).

    Why: Code that stacks arrays from Image.open breaks on mixed channel counts; loaders that convert
    silently treat RGBA transparency and 16-bit greyscale differently; and when the mode differs by
    class, a model can learn the mode instead of the content.
    Fix: Convert every image to the mode the model expects (usually RGB) when exporting the dataset, or
    make the loader convert explicitly (Image.convert("RGB"), color_mode="rgb").
    Thresholds: integrity.mixed_modes_min_share (share of the minority modes below which nothing is
    reported; default 0, any mix is reported).
    """

    id = "DSA006"
    name = "integrity.mixed-colour-modes"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        t = ctx.index.table
        imgs = t[t["readable"] | t["bomb"]]
        counts = imgs["mode"].value_counts()
        if len(counts) < 2:
            return
        majority = str(counts.index[0])
        minority = imgs[imgs["mode"] != majority]
        share = len(minority) / max(1, len(imgs))
        if share <= ctx.config.integrity.mixed_modes_min_share:
            return
        per_class = {f"{s}/{lab}" if s else lab: {str(m): int(n) for m, n in g["mode"].value_counts().items()}
                     for (s, lab), g in imgs.groupby(["split", "label"], sort=True)}
        mix = ", ".join(f"{m} {n}" for m, n in counts.items())
        yield self.finding(
            f"Mixed colour modes: {mix}",
            f"{len(counts)} colour modes across {len(imgs)} images ({mix}); {len(minority)} image(s) "
            f"are not {majority}.",
            paths=minority["path"].tolist(), subject="modes",
            evidence={"modes": {str(m): int(n) for m, n in counts.items()}, "majority": majority,
                      "per_class": per_class})


class TinyImage(Check):
    """Images with a side shorter than the configured minimum.

    Why: Icons, thumbnails and cropping accidents carry almost no information after upscaling to the
    model's input size, and are often mislabelled debris of a scraper.
    Fix: Remove them or replace them with full-size originals; lower integrity.min_side if small
    images are normal for your data (e.g. 28x28 digits).
    Thresholds: integrity.min_side (default 16 pixels).
    """

    id = "DSA007"
    name = "integrity.tiny-image"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        t = ctx.index.table
        limit = ctx.config.integrity.min_side
        tiny = t[(t["width"] > 0) & ((t["width"] < limit) | (t["height"] < limit))]
        if len(tiny):
            yield self.finding(
                f"{len(tiny)} image(s) smaller than {limit}px",
                f"{len(tiny)} image(s) have a side below {limit} pixels, e.g. {tiny['path'].iloc[0]} "
                f"({tiny['width'].iloc[0]}x{tiny['height'].iloc[0]}).",
                paths=tiny["path"].tolist(), subject="tiny",
                evidence={"min_side": limit, "count": int(len(tiny)),
                          "examples": _size_examples(tiny)})


class ExtremeAspectRatio(Check):
    """Images whose long side is many times the short side (banners, strips, broken crops).

    Why: Resizing to a square input squashes them beyond recognition; they are often screenshots,
    scans of several images, or crops gone wrong.
    Fix: Inspect them; crop to the object or remove them.
    Thresholds: integrity.max_aspect_ratio (default 10).
    """

    id = "DSA008"
    name = "integrity.extreme-aspect-ratio"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        t = ctx.index.table
        limit = ctx.config.integrity.max_aspect_ratio
        sized = t[(t["width"] > 0) & (t["height"] > 0)]
        ratio = sized[["width", "height"]].max(axis=1) / sized[["width", "height"]].min(axis=1)
        odd = sized[ratio > limit]
        if len(odd):
            yield self.finding(
                f"{len(odd)} image(s) with aspect ratio above {limit:g}",
                f"{len(odd)} image(s) are more than {limit:g} times longer than wide, e.g. "
                f"{odd['path'].iloc[0]} ({odd['width'].iloc[0]}x{odd['height'].iloc[0]}).",
                paths=odd["path"].tolist(), subject="aspect",
                evidence={"max_aspect_ratio": limit, "count": int(len(odd)),
                          "examples": _size_examples(odd)})


class DecompressionBomb(Check):
    """An image whose header claims more pixels than the configured limit (a decompression bomb).

    Why: Decoding it can take gigabytes of memory and stall or kill the training job; a tiny file that
    claims a huge size is a classic denial-of-service payload. dsaudit reads only its header.
    Fix: Remove it, or downscale it with a tool that streams; raise integrity.max_pixels only if such
    sizes are expected.
    Thresholds: integrity.max_pixels (default 89,478,485, Pillow's own warning limit).
    """

    id = "DSA009"
    name = "integrity.decompression-bomb"
    severity = Severity.ERROR

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        t = ctx.index.table
        for row in t[t["bomb"]].itertuples():
            yield self.finding(f"Oversized image {row.path}", f"{row.path} ({_where(row)}): {row.error}",
                               paths=[row.path],
                               evidence={"width": int(row.width), "height": int(row.height),
                                         "pixels": int(row.width) * int(row.height),
                                         "bytes": int(row.bytes),
                                         "max_pixels": ctx.config.integrity.max_pixels})


class EmptyClassFolder(Check):
    """A class folder with no files in it.

    Why: Keras' image_dataset_from_directory still counts it as a class, so the model gets an output
    that can never be trained, and class indices shift relative to a dataset without it.
    Fix: Delete the folder, or fill it.
    """

    id = "DSA010"
    name = "integrity.empty-class-folder"
    severity = Severity.WARNING

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        for issue in _issues(ctx, "empty_class"):
            yield self.finding(f"Empty class folder {issue.path}",
                               f"Class {issue.label!r} has no files in {issue.path}.",
                               subject=f"{issue.split}/{issue.label}",
                               evidence={"split": issue.split, "class": issue.label, "folder": issue.path})


class ClassMissingFromSplit(Check):
    """A class that exists in one split but not in another.

    Why: A class in validation or test that never appears in training cannot be predicted. Worse,
    Keras' image_dataset_from_directory numbers classes per folder in sorted order, so a class missing
    from one split shifts every later class index by one there: labels silently disagree between splits.
    Fix: Put examples of every class in every split (a stratified split does this), or pass the same
    explicit class_names list to every loader.
    """

    id = "DSA011"
    name = "integrity.class-missing-from-split"
    severity = Severity.ERROR

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        layout = ctx.index.layout
        splits = [s for s in layout.splits if s]
        if len(splits) < 2:
            return
        t = ctx.index.table
        present = {s: set(t.loc[t["split"] == s, "label"]) | set(layout.classes.get(s, [])) for s in splits}
        everything = sorted(set().union(*present.values()))
        for label in everything:
            has = [s for s in splits if label in present[s]]
            missing = [s for s in splits if label not in present[s]]
            if not missing:
                continue
            in_eval_not_train = "train" in missing
            severity = Severity.ERROR if in_eval_not_train else Severity.WARNING
            what = (f"Class {label!r} is in {', '.join(has)} but not in train: the model can never "
                    "predict it." if in_eval_not_train else
                    f"Class {label!r} is in {', '.join(has)} but missing from {', '.join(missing)}.")
            yield self.finding(
                f"Class {label!r} missing from {', '.join(missing)}",
                what + " Folder-based loaders number classes per split, so indices of later classes "
                "shift between splits.",
                subject=f"class:{label}", severity=severity,
                evidence={"class": label, "present_in": has, "missing_from": missing,
                          "classes_per_split": {s: sorted(present[s]) for s in splits}})


def _canonical(name: str) -> str:
    name = unicodedata.normalize("NFKC", name).casefold()
    return re.sub(r"[\s_\-]+", " ", name).strip()


class ClassNameVariants(Check):
    """Class names that differ only in case, spacing or separators ('Cat', 'cat', 'cat ').

    Why: They are different classes to every loader: one real class is split into two labels, or a
    split's class never matches its counterpart in training.
    Fix: Rename the folders (or manifest labels) to one spelling.
    """

    id = "DSA012"
    name = "integrity.class-name-variants"
    severity = Severity.ERROR

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        spellings: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for split, names in ctx.index.layout.classes.items():
            for name in names:
                spellings[_canonical(name)][name].append(split or "(pool)")
        for canon, variants in sorted(spellings.items()):
            if len(variants) < 2:
                continue
            listing = "; ".join(f"{name!r} in {', '.join(splits)}" for name, splits in sorted(variants.items()))
            yield self.finding(f"Class name variants: {', '.join(repr(v) for v in sorted(variants))}",
                               f"These class names differ only in case or spacing: {listing}.",
                               subject=f"class:{canon}",
                               evidence={"variants": {k: v for k, v in sorted(variants.items())}})


class HiddenFiles(Check):
    """Hidden and system files inside the dataset (.DS_Store, Thumbs.db, ._AppleDouble, .ipynb_checkpoints).

    Why: dsaudit ignores them, and so do most loaders; but a loader that lists every file picks them
    up, and .ipynb_checkpoints folders hold stale copies of images.
    Fix: Delete them before publishing the dataset (find . -name '.*' -prune), or leave them: this is
    information only.
    """

    id = "DSA013"
    name = "integrity.hidden-files"
    severity = Severity.INFO

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        hidden = _issues(ctx, "hidden")
        if hidden:
            names = Counter(i.path.rsplit("/", 1)[-1] for i in hidden)
            yield self.finding(f"{len(hidden)} hidden or system file(s) ignored",
                               f"{len(hidden)} hidden or system entries were skipped, e.g. "
                               f"{hidden[0].path}.",
                               paths=[i.path for i in hidden], subject="hidden",
                               evidence={"count": len(hidden), "names": dict(names.most_common(10))})


class SymlinkProblem(Check):
    """Symbolic links that loop, dangle, lead outside the dataset root, or repeat a folder.

    Why: A loop makes naive walkers recurse forever; a dangling link is a missing sample; a link out of
    the root means the dataset is not self-contained and can change behind your back (or, in a
    published archive, points at nothing). A folder link to another class or split folder makes a
    loader that follows links read the same files twice, under another label or split; when the
    other folder is in another split, that is leakage and the finding is an error. A folder reached
    twice without any link (a bind mount) is reported the same way, as a repeated folder. dsaudit
    follows no folder link that leaves the root or leads to a folder it scans anyway.
    Fix: Replace links with the files they point to, or remove them; unmount a bind mount that
    repeats a folder of the dataset.
    """

    id = "DSA014"
    name = "integrity.symlink-problem"
    severity = Severity.WARNING

    KINDS = {"symlink_cross_split": "lead to a folder of another split (the same files in two splits)",
             "symlink_loop": "loops or leads to a folder scanned already", "symlink_broken": "points to nothing",
             "symlink_outside": "points outside the dataset root",
             "repeated_folder_cross_split": "are a folder of another split, reached again without a symlink "
                                            "(a bind mount?): the same files in two splits",
             "repeated_folder": "are a folder scanned already, reached again without a symlink (a bind mount?)"}
    ERROR_KINDS = {"symlink_cross_split", "repeated_folder_cross_split"}  # leakage for loaders that follow them

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        for kind, what in self.KINDS.items():
            found = _issues(ctx, kind)
            if found:
                noun = "folder(s)" if kind.startswith("repeated_folder") else "symlink(s)"
                yield self.finding(f"{len(found)} {noun} that {what}",
                                   f"{len(found)} {noun} {what}, e.g. {found[0].path} "
                                   f"({found[0].detail}).",
                                   paths=[i.path for i in found], subject=kind,
                                   severity=Severity.ERROR if kind in self.ERROR_KINDS else None,
                                   evidence={"kind": kind, "links": [{"path": i.path, "detail": i.detail}
                                                                     for i in found[:EXAMPLES]]})


class UnexpectedEntries(Check):
    """Folders and files the layout does not explain: unknown split folders, stray files, pipes and devices.

    Why: dsaudit does not guess: a top-level folder named 'holdout' or 'dev' is not scanned, and a
    file lying next to the class folders is not a sample. Your loader may treat them differently. A
    named pipe, a device or a socket (or a link to one, such as /dev/zero) in a class folder is no
    image: a loader that opens it waits forever for a writer or reads without end, so it is an error
    and dsaudit never opens it.
    Fix: Rename split folders so their names hold train, val or test (any case and form: TrainingData,
    train_dir, seg_train, valid, dev, holdout), or pass --split train=FOLDER; move stray images into
    class folders, or describe the dataset with --manifest. Non-image
    files beside the class folders (README, labels.csv) are reported as info only. Remove named pipes,
    device nodes and sockets from the class folders.
    """

    id = "DSA015"
    name = "layout.unexpected-entries"
    severity = Severity.WARNING

    KINDS = {"unknown_folder": "unrecognised top-level folder(s) not scanned",
             "stray_file": "file(s) outside any class folder, not scanned",
             "duplicate_split_folder": "split(s) given by more than one folder (merged)",
             "unknown_split_value": "manifest row(s) with an unknown split value, not scanned",
             "manifest_bad_row": "manifest row(s) with an empty path or label, not scanned",
             "not_regular_file": "entries in class folders that are not regular files (named pipes, devices, "
                                 "sockets), not read",
             "manifest_duplicate_row": "manifest row(s) repeating an earlier row's file (a loader reads it "
                                       "twice); scanned once",
             "manifest_outside_folder": "manifest row(s) naming a file outside the manifest's folder"}

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        for kind, what in self.KINDS.items():
            found = _issues(ctx, kind)
            severity = None
            if kind == "stray_file":
                # README.md or labels.csv beside the class folders is normal; a stray *image* is a
                # sample that lost its class folder.
                images = [i for i in found if _extension(i.path) in IMAGE_EXTENSIONS]
                others = [i for i in found if i not in images]
                if others:
                    yield self._report(others, "file(s) beside the class folders that are not images "
                                       "(documentation, metadata); not scanned", "stray_file_other",
                                       Severity.INFO)
                found = images
            if kind == "not_regular_file":
                severity = Severity.ERROR  # a loader that opens one hangs or reads without end
            if kind == "manifest_outside_folder":
                severity = Severity.INFO   # read as listed; said so that it is a choice
            if found:
                yield self._report(found, what, kind, severity)

    def _report(self, found, what: str, kind: str, severity: Severity | None) -> Finding:
        return self.finding(f"{len(found)} {what}",
                            f"{len(found)} {what}, e.g. {found[0].path}"
                            + (f": {found[0].detail}" if found[0].detail else ""),
                            paths=list(dict.fromkeys(i.path for i in found if not i.path.startswith("line "))),
                            subject=kind, severity=severity,
                            evidence={"kind": kind, "entries": [{"path": i.path, "detail": i.detail}
                                                                for i in found[:EXAMPLES]],
                                      "count": len(found)})


def _extension(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


class MissingFiles(Check):
    """Samples that could not be reached: manifest rows whose file does not exist, unreadable folders.

    Why: The training job will crash on them or silently train on fewer samples than the manifest
    promises.
    Fix: Restore the files or fix the paths (they are relative to the manifest's folder); fix folder
    permissions.
    """

    id = "DSA016"
    name = "integrity.missing-files"
    severity = Severity.ERROR

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        missing = _issues(ctx, "manifest_missing")
        if missing:
            yield self.finding(f"{len(missing)} manifest file(s) not found",
                               f"{len(missing)} file(s) listed in the manifest do not exist, e.g. "
                               f"{missing[0].path} ({missing[0].detail}).",
                               paths=[i.path for i in missing], subject="manifest_missing",
                               evidence={"count": len(missing),
                                         "rows": [{"path": i.path, "detail": i.detail} for i in missing[:EXAMPLES]]})
        for issue in _issues(ctx, "unreadable_dir"):
            yield self.finding(f"Cannot read folder {issue.path}",
                               f"{issue.path} could not be listed ({issue.detail}); its files were not scanned.",
                               paths=[issue.path], evidence={"error": issue.detail})


class LayoutReading(Check):
    """The split folders were read with a guess, or class names look like split names.

    Why: Which folders are splits decides everything after it. Read a train/test pair as one pool and
    its folders become two "classes": every copy between them is then reported as "one image under two
    labels" and no leakage check runs. When the names do not say which folder is which split (folders
    holding the same classes under names such as A/ and B/, a folder beside the splits that holds their
    classes), dsaudit reads the layout by its shape and says so here, naming the choice it made; a pool
    whose classes are named like splits (train/, test/ holding images directly) is reported too.
    Fix: Check the reading in the report's layout section. If it is wrong, name the folders with
    `--split train=FOLDER --split val=FOLDER` (or `splits = ["train=FOLDER", ...]` in the config), or
    rename them so that their names hold train, val or test; give each split its class folders.
    """

    id = "DSA017"
    name = "layout.split-reading"
    severity = Severity.WARNING

    KINDS = {"ambiguous_layout": "Split folders read by guess", "split_named_classes": "Classes named like splits"}

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        for kind, title in self.KINDS.items():
            for issue in _issues(ctx, kind):
                yield self.finding(f"{title}: {issue.path}", issue.detail, paths=[],
                                   subject=f"{kind}:{issue.path}",
                                   evidence={"kind": kind, "folder": issue.path,
                                             "reading": list(ctx.index.layout.reading)})


class SplitWithoutImages(Check):
    """A split (train, val or test) that holds no image a loader could read.

    Why: An empty validation or test split (no class folders, empty class folders, or only files
    that do not decode) gives no metric at all, or a loader error at the end of the first epoch;
    an empty training split trains nothing. Either way every number reported for the run is void.
    Fix: Put the split's images back (check the copy or the download), or remove the split folder
    and split the training data explicitly.
    """

    id = "DSA018"
    name = "integrity.split-without-images"
    severity = Severity.ERROR

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        layout = ctx.index.layout
        t = ctx.index.table
        for split in (s for s in layout.splits if s):
            rows = t[t["split"] == split]
            usable = int(((rows["kind"] == "image") & rows["readable"]).sum())
            if usable:
                continue
            classes = layout.classes.get(split, [])
            held = (f"{len(rows)} file(s), none a readable image" if len(rows) else
                    f"{len(classes)} class folder(s), all empty" if classes else "no class folders")
            yield self.finding(f"Split {split!r} has no images",
                               f"The {split} split holds {held}: nothing can be trained or measured on it.",
                               subject=f"split:{split}",
                               evidence={"split": split, "files": int(len(rows)), "classes": list(classes)})


CHECKS = [UnreadableImage, TruncatedImage, EmptyFile, NonImageFile, ExtensionMismatch, MixedColourModes,
          TinyImage, ExtremeAspectRatio, DecompressionBomb, EmptyClassFolder, ClassMissingFromSplit,
          ClassNameVariants, HiddenFiles, SymlinkProblem, UnexpectedEntries, MissingFiles, LayoutReading,
          SplitWithoutImages]
