"""Configuration: defaults < `[tool.dsaudit]` in pyproject.toml or dsaudit.toml < command line.

All thresholds live here, apart from the checks that use them, so that what a check *measures*
stays separate from the numbers that *judge* it (the deepchecks lesson). Each area has its own
frozen section; a TOML file sets them as sub-tables, for example::

    [tool.dsaudit]
    fail_on = "warning"
    ignore = ["DSA006"]
    severity = { DSA013 = "warning" }

    [tool.dsaudit.leakage]
    near_threshold = 8

Each setting is declared once, as a field ``name: type = setting(default, range, doc)``; the
range table (``RANGES``) and the settings table of docs/checks.md are made from those declarations.

Unknown keys are a usage error (exit 2) so that a typo never silently disables a threshold. For
the same reason every numeric key has a range (``RANGES``: nan and inf never pass, a p-value is in
(0, 1], a count is at least 1, ...), severity overrides must name a check, and choices (fail_on,
engine, probe.mode) are matched case-insensitively. Numbers must be numbers: a quoted "32" for a
numeric key is an error too (an integer for a float key is fine); booleans must be true or false,
not "true", "off" or 1. val_batch_size, max_batch_size, steps_per_epoch and validation_steps need
batch_size, without which they would change nothing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from dsaudit.findings import Severity


class ConfigError(ValueError):
    """A configuration file or option is wrong. The CLI maps it to exit code 2."""


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: lo..hi, each end closed or open, None for no bound.

    Checked when the configuration is loaded, because a value outside it does not mean anything
    sensible and fails late and quietly: a zero CI half-width crashed DSA103, a p-value threshold
    of 2 or nan turns a check on or off for every input without saying so."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return not (self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)))

    def describe(self, integer: bool) -> str:
        """The wording of error messages and docs, e.g. 'an integer >= 1', 'a number in (0, 1]'."""
        kind = "an integer" if integer else "a number"
        if self.lo is not None and self.hi is not None:
            return (f"{kind} in {'(' if self.lo_open else '['}{_num(self.lo)}, "
                    f"{_num(self.hi)}{')' if self.hi_open else ']'}")
        if self.lo is not None:
            return f"{kind} {'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{kind} {'<' if self.hi_open else '<='} {_num(self.hi)}"
        return f"a finite {'integer' if integer else 'number'}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


UNIT = Range(0.0, 1.0)                      # shares, ratios of a part to its whole, similarities, effect sizes
P_VALUE = Range(0.0, 1.0, lo_open=True)     # "p below this": 0 could never fire
COUNT = Range(1)                            # sizes and counts that must be at least one
OPTIONAL_COUNT = Range(0)                   # counts where 0 means "off" or "automatic"
AT_LEAST_ONE = Range(1.0)                   # ratios of a larger to a smaller quantity

def setting(default: Any, allowed: Range | None = None, doc: str = "") -> Any:
    """A configuration field declared once: its default, the Range its value must lie in (numeric
    settings; checked when the configuration loads, RANGES) and what it means (docs/checks.md)."""
    return field(default=default, metadata={"range": allowed, "doc": doc})


@dataclass(frozen=True)
class IntegrityConfig:
    min_side: int = setting(16, COUNT, "images with a side below this many pixels are \"tiny\"")
    max_aspect_ratio: float = setting(10.0, AT_LEAST_ONE, "long side / short side above this is \"extreme\"")
    max_pixels: int = setting(89_478_485, COUNT, "above this the image is treated as a decompression bomb")
    mixed_modes_min_share: float = setting(0.0, UNIT, "report mixed colour modes when the minority share exceeds this")


@dataclass(frozen=True)
class LeakageConfig:
    exact: bool = setting(True, None, "byte- and pixel-identical duplicates")
    near: bool = setting(True, None, "perceptual near-duplicates")
    near_threshold: int = setting(
        8, Range(0, 64),
        "max Hamming distance (of 64 bits) for a pHash match; Hamming distance between 64-bit hashes")
    verify_threshold: float = setting(
        0.90, UNIT,
        "min aligned similarity (detail NCC, shift <= 5/32) to confirm a pair")
    search_threshold: float = setting(0.94, UNIT, "...stricter when the match needed a zoom/rotation/sub-pixel search")
    smooth_boost: float = setting(0.06, UNIT, "...and this much stricter for smooth, upscaled low-detail images")
    min_isotropy: float = setting(
        0.55, UNIT,
        "shifted/searched matches need detail in more than one direction; isotropy is 0 (one edge) .. 1 "
        "(texture); 0 turns the rule off")
    knn: int = setting(
        8, OPTIONAL_COUNT,
        "nearest train neighbours per val/test image checked (0: off); 0: no k-NN stage")
    knn_min_similarity: float = setting(
        0.3, Range(-1.0, 1.0),
        "whitened-descriptor cosine below which a k-NN candidate is not verified; a cosine")
    knn_shifts: bool = setting(True, None, "score train images at the best of 9 query shifts (3x3 grid, 0/+-2 px)")
    knn_max_pairs: float = setting(
        5e10, Range(0.0),
        "queries x references x shifts above which the k-NN runs approximately")
    knn_within: int = setting(
        4, OPTIONAL_COUNT,
        "neighbours per image inside its own split / the pool (0: off); 0: no within-split k-NN")
    knn_within_max_pairs: float = setting(
        2e9, Range(0.0),
        "per split: images^2 x shifts; above it without shifts, then approximate")
    group_regex: str = setting("", None, "regex on the relative path; group(1) or the match is the group")
    cluster_warn_ratio: float = setting(
        0.8, UNIT,
        "warn when effective/raw count of a class falls below this; effective / raw count")


@dataclass(frozen=True)
class BalanceConfig:
    imbalance_warn_ratio: float = setting(3.0, AT_LEAST_ONE, "largest/smallest class count")
    imbalance_error_ratio: float = setting(10.0, AT_LEAST_ONE, "largest/smallest count that makes DSA101 an error")
    class_weight_min_ratio: float = setting(
        1.5, AT_LEAST_ONE,
        "from this ratio a training split gets paste-ready class weights (info)")
    shift_p_value: float = setting(0.01, P_VALUE, "chi-square significance for a class-distribution shift")
    shift_min_tvd: float = setting(0.10, UNIT, "...and minimum total variation distance to call it large")
    max_ci_halfwidth: float = setting(
        0.05, Range(0.0, 1.0, lo_open=True),
        "95% CI half-width of an accuracy measured on a split")
    val_share_min: float = setting(0.05, UNIT, "sane range for the validation share of all data")
    val_share_max: float = setting(0.40, UNIT, "...and its upper end")
    shortcut_min_cramers_v: float = setting(
        0.3, UNIT,
        "association (bias-corrected Cramér's V) of a file property with the label")
    shortcut_p_value: float = setting(0.001, P_VALUE, "p-value below which such an association counts")
    min_effective_per_class: int = setting(
        30, COUNT,
        "DSA105: flag a class with fewer distinct source images than this")


@dataclass(frozen=True)
class BatchConfig:
    batch_size: int | None = setting(None, COUNT, "training batch size to check; no batch check runs without it")
    val_batch_size: int | None = setting(None, COUNT, "validation/test batch size (default: batch_size)")
    max_batch_size: int | None = setting(None, COUNT, "upper bound for the batch sizes DSA301 recommends")
    steps_per_epoch: int | None = setting(None, COUNT, "steps_per_epoch given to fit(): DSA302 checks it")
    validation_steps: int | None = setting(None, COUNT, "validation_steps given to fit(): DSA302 checks it")
    validation_split: float | None = setting(
        None, Range(0.0, 1.0, lo_open=True, hi_open=True),
        "simulate Keras' tail validation_split with this fraction")
    val_split: str = setting("", None, "the split validation_steps counts (empty: val, else the tail, else test)")
    keras_split: float | None = setting(
        None, Range(0.0, 1.0, lo_open=True, hi_open=True),
        "simulate image_dataset_from_directory(validation_split=F, ..., seed); Keras' own check: 0 < f < 1")
    tail_min_share: float = setting(
        0.5, UNIT,
        "flag a class whose share in the tail is below this x its share overall; share in the tail / share "
        "overall; above 1 flags proportional classes")
    runs_p_value: float = setting(
        0.001, P_VALUE,
        "DSA312: runs-test p-value below which manifest rows count as clustered")
    runs_max_ratio: float = setting(
        0.5, Range(0.0, 1.0, lo_open=True),
        "DSA312: ...and observed runs at most this x the runs expected at random; observed / expected runs; 1 "
        "is a random order")


@dataclass(frozen=True)
class ProbeConfig:
    mode: str = setting("auto", None, "auto: run when cross-split leakage was found and TF is installed")
    budget_seconds: float = setting(300.0, Range(0.0), "0: the probe is skipped")
    min_inflation: float = setting(
        0.05, UNIT,
        "inflation (accuracy points as a fraction) that makes an error; accuracy points as a fraction")
    p_value: float = setting(0.05, P_VALUE, "p-value below which the measured inflation counts")
    min_power: float = setting(
        0.05, UNIT,
        "auto: skip a probe whose test has at best less chance to find min_inflation")
    max_train: int = setting(5000, COUNT, "largest training subsample per probe run (memorisation shows on small ones)")
    max_epochs: int = setting(20, COUNT, "epochs per run when the budget allows (raised for tiny subsamples)")


@dataclass(frozen=True)
class ContentConfig:
    """Image quality (DSA40x), drift between splits (DSA41x), outliers (DSA420) and likely label
    errors (DSA43x). Defaults chosen on CIFAR-10 train and COVID-CT (docs/content.md has the flag
    rates they give there)."""
    dark_max_p95: float = setting(0.30, UNIT, "too dark: the 95th-percentile grey level below this (0..1)")
    bright_min_p05: float = setting(0.75, UNIT, "too bright: the 5th-percentile grey level above this")
    blur_ratio: float = setting(0.50, UNIT, "blurry: sharpness below this x the median of the reference split")
    low_info_max_entropy: float = setting(
        2.5, Range(0.0, 8.0),
        "low information: grey-histogram entropy below this many bits...; bits of a 256-bin histogram")
    low_info_max_contrast: float = setting(0.02, UNIT, "...or grey-level spread (std, 0..1) below this")
    grey_max_chroma: float = setting(0.01, UNIT, "greyscale picture: mean channel spread below this (0..1)...")
    grey_min_colour_share: float = setting(0.5, UNIT, "...in a dataset where at least this share of images has colour")
    odd_size_factor: float = setting(4.0, AT_LEAST_ONE, "odd size: side (sqrt of area) this many times off the median")
    odd_aspect_factor: float = setting(2.0, AT_LEAST_ONE, "odd aspect: aspect ratio this many times off the median")
    shortcut_p_value: float = setting(0.001, P_VALUE, "a flag concentrated in one class (Fisher exact test)...")
    shortcut_min_ratio: float = setting(3.0, AT_LEAST_ONE, "...at this many times the flag rate of the other classes")
    drift_p_value: float = setting(0.001, P_VALUE, "per-property two-sample test (KS) p-value...")
    drift_min_effect: float = setting(0.1, UNIT, "...and KS distance (0..1) to call a property drifted")
    drift_min_auc: float = setting(
        0.6, Range(0.5, 1.0),
        "domain classifier: AUC at least this, with its 95% interval above 0.5")
    drift_max_samples: int = setting(
        3000, Range(20),
        "images per side the domain classifier sees (subsampled above it)")
    outlier_k: int = setting(5, COUNT, "neighbours for the outlier distance")
    outlier_ratio: float = setting(2.0, AT_LEAST_ONE, "outlier: k-NN distance this many times the class's median")
    label_k: int = setting(10, COUNT, "neighbours that vote in the cheap label-error check")
    label_min_share: float = setting(0.8, UNIT, "flag when at least this share of the neighbours carry one other label")
    label_knn_max_pairs: float = setting(
        4e8, Range(1.0),
        "the label vote's k-NN over the whole dataset is exact up to this many image pairs (n^2); "
        "above it approximate (faiss IVF), comparing about this many pairs, its sampled recall reported")
    label_probe_budget: float = setting(
        300.0, Range(0.0),
        "seconds for the cross-validated probe behind DSA431 (probe.mode = on)")
    max_listed: int = setting(200, COUNT, "images listed per finding (all flagged ones are counted)")


@dataclass(frozen=True)
class AuditConfig:
    fail_on: str = setting("error", None, "error | warning | info | never")
    select: tuple[str, ...] = setting((), None, "check IDs, names or globs to run (empty: all)")
    ignore: tuple[str, ...] = setting((), None, "check IDs, names or globs to skip")
    severity: Mapping[str, str] = field(default_factory=dict, metadata={"doc": "per-check severity overrides, "
                                                                               "e.g. { DSA006 = \"info\" }"})
    jobs: int = setting(
        0, Range(0, 4096),
        "0: all cores; 0: all cores; the bound keeps thread counts sane (TensorFlow's are C ints)")
    engine: str = setting("local", None, "local (process pool) | dask (a Dask cluster)")
    scheduler: str = setting("", None, "Dask scheduler address; empty: $DASK_SCHEDULER_ADDRESS or a LocalCluster")
    cache: bool = setting(True, None, "read and write the record cache (--no-cache: decode everything)")
    cache_dir: str = setting("", None, "empty: $DSAUDIT_CACHE_DIR or the user cache folder")
    seed: int = setting(0, Range(0, 2**32 - 1), "what numpy's and TensorFlow's global seeding accept")
    thumbnails: int = setting(
        20000, OPTIONAL_COUNT,
        "at most this many images embedded in the HTML report (0: none); 0: no thumbnails")
    thumbnail_bytes: int = setting(
        8_000_000, OPTIONAL_COUNT,
        "...within this many bytes of embedded images: the budget that binds; 0: no thumbnails")
    splits: tuple[str, ...] = setting((), None, '"train=FOLDER", "val=FOLDER": split folders (paths in ROOT), '
                                      "not inferred")
    integrity: IntegrityConfig = field(default_factory=IntegrityConfig)
    leakage: LeakageConfig = field(default_factory=LeakageConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    content: ContentConfig = field(default_factory=ContentConfig)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["select"] = list(self.select)
        data["ignore"] = list(self.ignore)
        data["severity"] = dict(self.severity)
        return data

    @property
    def fail_threshold(self) -> Severity | None:
        return None if self.fail_on == "never" else Severity.parse(self.fail_on)

    def chosen_splits(self) -> dict[str, list[str]]:
        """`splits` as {canonical split: [folders]} (validated when loaded)."""
        from dsaudit.index.splits import canonical_split

        out: dict[str, list[str]] = {}
        for item in self.splits:
            name, _, folder = item.partition("=")
            out.setdefault(canonical_split(name) or name, []).append(folder.strip().strip("/"))
        return out

    def resolved_jobs(self) -> int:
        return self.jobs if self.jobs and self.jobs > 0 else (os.cpu_count() or 1)


def declared_settings(obj: Any = None, prefix: str = "") -> list[tuple[str, Any, Range | None, str]]:
    """(dotted key, default, range, doc) of every setting of `obj` (default: AuditConfig()) and its
    sections, in declaration order: what RANGES and the settings table of docs/checks.md derive from."""
    obj = AuditConfig() if obj is None else obj
    out = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += declared_settings(value, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, value, f.metadata.get("range"), f.metadata.get("doc", "")))
    return out


# Every int/float setting's range, by dotted key, from the fields' declarations (a test keeps every
# numeric setting declared with one). nan and inf never pass.
RANGES: dict[str, Range] = {key: allowed for key, _, allowed, _ in declared_settings() if allowed is not None}


def _coerce(name: str, value: Any, default: Any, annotation: str) -> Any:
    """Coerce a TOML/CLI value to the type of the field, with a clear error when impossible."""
    if value is None:
        return None
    if "tuple" in annotation:
        if isinstance(value, str):
            value = [v for v in (p.strip() for p in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list of strings")
        return tuple(str(v) for v in value)
    if "Mapping" in annotation:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a table such as {{ DSA001 = \"warning\" }}")
        out = {}
        for k, v in value.items():
            try:
                Severity.parse(v)
            except ValueError as exc:
                raise ConfigError(f"{name}.{k}: {exc}") from None
            out[str(k).upper()] = str(v).lower()
        return out
    if isinstance(value, str) and ("int" in annotation or "float" in annotation):
        # batch_size = "32" in a TOML file is a string: refused rather than guessed at, as "32 " or
        # "1e-3" would be converted and "32px" not (typer hands CLI options over as numbers already)
        kind = "an integer" if "float" not in annotation else "a number"
        raise ConfigError(f"{name} must be {kind}, not the string {value!r} (write it without quotes)")
    if "bool" in annotation:
        # likewise exact = "false" or cache = 0: refused rather than guessed at ("off", "n", 2?), as
        # a wrong guess turns a check on or off unseen; TOML has true and false, typer hands over bools
        if not isinstance(value, bool):
            shown = f"the string {value!r} (write true or false without quotes)" if isinstance(value, str) \
                else repr(value)
            raise ConfigError(f"{name} must be true or false, not {shown}")
        return value
    try:
        if "int" in annotation and "float" not in annotation:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if "float" in annotation:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float() of a 400-digit TOML integer
        raise ConfigError(f"{name}: {value!r} is not a valid {annotation}") from None


def _apply(obj: Any, values: Mapping[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in known:
            raise ConfigError(f"unknown configuration key {where}{key!r} "
                              f"(known: {', '.join(sorted(known))})")
        f = known[key]
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}{key} must be a table")
            changes[key] = _apply(current, value, f"{where}{key}.")
        else:
            changes[key] = _coerce(f"{where}{key}", value, current, str(f.type))
    return dataclasses.replace(obj, **changes)



# Settings that are choices: matched case-insensitively (--fail-on ERROR as --engine LOCAL).
CHOICES: dict[str, tuple[str, ...]] = {
    "fail_on": ("error", "warning", "info", "never"),
    "engine": ("local", "dask"),
    "probe.mode": ("auto", "on", "off"),
}

# The command-line option that also sets a key, named in its error message.
FLAGS = {"splits": "--split", "jobs": "--jobs", "seed": "--seed", "fail_on": "--fail-on", "engine": "--engine",
         "scheduler": "--scheduler", "leakage.group_regex": "--group-regex",
         "batch.batch_size": "--batch-size", "batch.val_batch_size": "--val-batch-size",
         "batch.max_batch_size": "--max-batch-size", "batch.steps_per_epoch": "--steps-per-epoch",
         "batch.validation_steps": "--validation-steps", "batch.validation_split": "--validation-split",
         "batch.val_split": "--val-split",
         "batch.keras_split": "--keras-split",
         "probe.budget_seconds": "--probe-budget"}


def _label(key: str) -> str:
    return f"{key} ({FLAGS[key]})" if key in FLAGS else key


def numeric_settings(obj: Any, prefix: str = "") -> list[tuple[str, Any, bool]]:
    """(dotted key, value, is_integer) of every int or float setting of `obj` and its sections."""
    out = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += numeric_settings(value, f"{prefix}{f.name}.")
            continue
        kind = str(f.type).replace(" | None", "").strip()
        if kind in ("int", "float"):
            out.append((prefix + f.name, value, kind == "int"))
    return out


def _get(cfg: AuditConfig, key: str) -> Any:
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _replace(cfg: AuditConfig, key: str, value: Any) -> AuditConfig:
    if "." not in key:
        return dataclasses.replace(cfg, **{key: value})
    section, sub = key.split(".", 1)
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{sub: value})})


def _check_ranges(cfg: AuditConfig) -> None:
    """Every numeric setting is finite and inside its Range; pairs that bound each other are ordered;
    batch sizes that only refine batch_size come with it."""
    for key, value, integer in numeric_settings(cfg):
        if value is None:  # an optional setting left unset (batch sizes)
            continue
        allowed = RANGES.get(key, Range())
        finite = integer or math.isfinite(value)  # math.isfinite(10**400) would raise
        if not finite or value not in allowed:
            raise ConfigError(f"{_label(key)} must be {allowed.describe(integer)}, not {value!r}")
    b = cfg.balance
    if b.imbalance_error_ratio < b.imbalance_warn_ratio:
        raise ConfigError(f"balance.imbalance_error_ratio ({b.imbalance_error_ratio!r}) must be at least "
                          f"balance.imbalance_warn_ratio ({b.imbalance_warn_ratio!r})")
    if b.val_share_max < b.val_share_min:
        raise ConfigError(f"balance.val_share_max ({b.val_share_max!r}) must be at least "
                          f"balance.val_share_min ({b.val_share_min!r})")
    batch = cfg.batch
    if batch.batch_size is None:
        for key in ("batch.val_batch_size", "batch.max_batch_size", "batch.steps_per_epoch",
                    "batch.validation_steps"):
            # the batch checks (DSA301/302) run only with a batch size: alone these would be ignored
            if _get(cfg, key) is not None:
                raise ConfigError(f"{_label(key)} needs {_label('batch.batch_size')}: without a batch size "
                                  "no batch check runs, so it would be ignored")
    if batch.validation_split is not None and batch.keras_split is not None:
        # two different loaders' splits of the same folder: one training run uses one of them
        raise ConfigError(f"{_label('batch.validation_split')} and {_label('batch.keras_split')} simulate two "
                          "different loaders (a tail split, a seeded shuffle split): give one of them")
    for key in ("batch.batch_size", "batch.val_batch_size"):
        # max_batch_size bounds the sizes DSA301 recommends for every set, train and eval alike; a
        # requested size above it contradicts it (and made the "largest size <= max" advice odd)
        size = _get(cfg, key)
        if batch.max_batch_size is not None and size is not None and size > batch.max_batch_size:
            raise ConfigError(f"{_label('batch.max_batch_size')} is {batch.max_batch_size}, below "
                              f"{_label(key)} {size}: it bounds the recommended batch sizes, so it must "
                              "be at least every batch size asked for")


def _normalise_choices(cfg: AuditConfig) -> AuditConfig:
    """Choices in lower case, or a ConfigError naming the allowed ones."""
    for key, allowed in CHOICES.items():
        value = str(_get(cfg, key)).strip().lower()
        if value not in allowed:
            raise ConfigError(f"{_label(key)} must be {', '.join(allowed[:-1])} or {allowed[-1]}, "
                              f"not {_get(cfg, key)!r}")
        cfg = _replace(cfg, key, value)
    return cfg


def _check_group_regex(pattern: str) -> None:
    import re

    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        # re.compile raises more than re.error: OverflowError for a{99999999999}, RecursionError
        # for thousands of nested groups; ValueError (invalid flag combinations) for good measure
        raise ConfigError(f"{_label('leakage.group_regex')} is not a valid regular expression: "
                          f"{exc}") from None


def _check_splits(items: tuple[str, ...]) -> None:
    from dsaudit.index.splits import canonical_split

    for item in items:
        name, eq, folder = item.partition("=")
        if not eq or not folder.strip().strip("/"):
            raise ConfigError(f"{_label('splits')}: {item!r} must be SPLIT=FOLDER, e.g. train=TrainingData")
        if canonical_split(name) is None:
            raise ConfigError(f"{_label('splits')}: {name.strip()!r} is not a split name (train, val or test)")


def _validate(cfg: AuditConfig) -> AuditConfig:
    """The loaded configuration, with choices normalised, or a ConfigError (exit 2) naming the first
    bad key and what it may be."""
    cfg = _normalise_choices(cfg)
    _check_splits(cfg.splits)
    if cfg.batch.val_split:
        from dsaudit.index.splits import canonical_split

        name = canonical_split(cfg.batch.val_split)
        if name is None:
            raise ConfigError(f"{_label('batch.val_split')}: {cfg.batch.val_split!r} is not a split name "
                              "(train, val or test)")
        cfg = _replace(cfg, "batch.val_split", name)
    _check_ranges(cfg)
    if cfg.leakage.group_regex:
        _check_group_regex(cfg.leakage.group_regex)
    if cfg.scheduler.strip():
        from dsaudit.index.dask_engine import address_problem

        problem = address_problem(cfg.scheduler.strip())
        if problem:
            raise ConfigError(f"{_label('scheduler')}: {problem}")
    return cfg


def find_config_file(root: Path | None) -> Path | None:
    """A dsaudit.toml, or a pyproject.toml with [tool.dsaudit], beside ROOT (in its parent folder)
    or inside it. Reading a config file inside the dataset is allowed; writing never is."""
    if root is None:
        return None
    candidates = []
    for folder in (root, root.parent):
        candidates += [folder / "dsaudit.toml", folder / "pyproject.toml"]
    for path in candidates:
        if path.is_file():
            if path.name == "dsaudit.toml":
                return path
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue
            if "dsaudit" in data.get("tool", {}):
                return path
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        return dict(data.get("tool", {}).get("dsaudit", {}))
    # dsaudit.toml: either top-level keys or a [tool.dsaudit] table
    return dict(data.get("tool", {}).get("dsaudit", data))


def load_config(root: Path | None, config_file: Path | None = None,
                overrides: Mapping[str, Any] | None = None) -> tuple[AuditConfig, Path | None]:
    """Build the effective configuration and say which file it came from (if any).

    `overrides` use dotted keys for sections ("batch.batch_size") and plain keys for the top
    level; None values are ignored, so a CLI can pass every option unconditionally.
    """
    cfg = AuditConfig()
    source = config_file if config_file is not None else find_config_file(root)
    if source is not None:
        cfg = _apply(cfg, read_config_file(source), "")
    if overrides:
        nested: dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            if "." in key:
                section, sub = key.split(".", 1)
                nested.setdefault(section, {})[sub] = value
            else:
                nested[key] = value
        cfg = _apply(cfg, nested, "")
    return _validate(cfg), source
