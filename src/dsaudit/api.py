"""The Python API: ``dsaudit.scan("data/", batch_size=32)`` returns a :class:`Report`.

It runs exactly what ``dsaudit scan`` runs (the same configuration loading and validation, the same
pipeline, the same renderers); only the surface differs. Options are keyword arguments named after
the configuration keys (``batch_size``, ``near_threshold``, ``fail_on``, ...), or after the CLI flag
that sets a key (``probe_budget`` for ``--probe-budget``), or a whole section as a mapping
(``leakage={"near_threshold": 6}``). The set of accepted keywords is derived from
:class:`~dsaudit.config.AuditConfig` and ``config.FLAGS``, so a new setting is an option here the day
it is added there. Errors raise :class:`ConfigError` (a wrong option or config file) or
:class:`DatasetError` (an unusable dataset root or manifest), never ``SystemExit``.

Nothing here writes anything unless :meth:`Report.save` is called; a scan never writes inside the
dataset, and ``save`` refuses a folder inside it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from dsaudit.config import FLAGS, AuditConfig, ConfigError, load_config
from dsaudit.findings import CheckError, Finding, ScanResult, Severity
from dsaudit.index.layout import DatasetError, display_path, is_inside

__all__ = ["scan", "scan_datasets", "Report", "load_report", "option_keys", "ConfigError", "DatasetError",
           "Finding", "Severity"]


# -- options -------------------------------------------------------------------------------------

def _section_names() -> dict[str, list[str]]:
    """Every section setting's own name and the dotted keys that carry it."""
    names: dict[str, list[str]] = {}
    cfg = AuditConfig()
    for f in dataclasses.fields(AuditConfig):
        default = getattr(cfg, f.name)
        if dataclasses.is_dataclass(default):
            for sub in dataclasses.fields(default):
                names.setdefault(sub.name, []).append(f"{f.name}.{sub.name}")
    return names


def option_keys() -> dict[str, str]:
    """Every keyword option and the dotted configuration key it sets, derived from AuditConfig:

    * each top-level setting by its name (``fail_on``, ``jobs``, ``seed``, ...);
    * each section setting by its own name when no other section has one of that name
      (``batch_size`` -> ``batch.batch_size``); a name two sections share is set through its
      section, ``balance={"shortcut_p_value": 1e-4}``;
    * the name of the CLI flag that sets a key (``--probe-budget`` -> ``probe_budget``).

    Sections themselves (``leakage``, ``batch``, ...) are accepted as mappings and are not listed."""
    cfg = AuditConfig()
    keys = {f.name: f.name for f in dataclasses.fields(AuditConfig)
            if not dataclasses.is_dataclass(getattr(cfg, f.name))}
    for name, dotted in _section_names().items():
        if len(dotted) == 1 and name not in keys:
            keys[name] = dotted[0]
    for key, flag in FLAGS.items():
        keys.setdefault(flag.lstrip("-").replace("-", "_"), key)
    return keys


def _sections() -> set[str]:
    cfg = AuditConfig()
    return {f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))}


def overrides_from_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword options as the dotted overrides load_config takes (values are validated there).

    ``probe=True/False`` is ``--probe/--no-probe`` (probe.mode on/off), ``probe="auto"`` sets the
    mode, and ``probe={...}`` the section."""
    keys = option_keys()
    sections = _sections()
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name == "probe" and (isinstance(value, bool) or isinstance(value, str)):
            out["probe.mode"] = ("on" if value else "off") if isinstance(value, bool) else value
        elif name in sections:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{name} must be a mapping of {name} settings, such as "
                                  f"{name}={{...}}, not {type(value).__name__}")
            for sub, v in value.items():
                out[f"{name}.{str(sub).replace('-', '_')}"] = v
        elif name in keys:
            out[keys[name]] = value
        elif len(_section_names().get(name, [])) > 1:
            where = " or ".join(f"{d.split('.')[0]}={{{name!r}: ...}}" for d in _section_names()[name])
            raise ConfigError(f"option {name!r} is a setting of several sections: pass it as {where}")
        else:
            close = difflib.get_close_matches(name, list(keys) + sorted(sections), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown option {name!r}{hint}; options are the configuration keys, "
                              "see dsaudit.option_keys()")
    return out


@dataclass(frozen=True)
class Prepared:
    """What a scan needs after its arguments were checked: the effective configuration, the config
    file it came from, and where the data lives (the local root folder, or None when remote)."""

    config: AuditConfig
    source: Path | None
    data_root: Path
    remote: bool


def prepare(root: Any, manifest: Any = None, config_file: Path | None = None,
            overrides: Mapping[str, Any] | None = None) -> Prepared:
    """Check the dataset arguments and load the configuration, as `dsaudit scan` does before it
    scans. Raises DatasetError (root/manifest) or ConfigError (options, config file, patterns)."""
    from dsaudit.checks.registry import check_severity_keys, unknown_patterns
    from dsaudit.index.io import is_remote

    if root is None and manifest is None:
        raise DatasetError("give a dataset ROOT folder, or --manifest FILE.csv")
    remote = any(isinstance(p, str) and is_remote(p) for p in (root, manifest))
    if manifest is not None and not remote and not Path(manifest).is_file():
        raise DatasetError(f"manifest not found or not a file: {display_path(str(manifest))}")
    if remote and root is None:
        raise DatasetError("a remote --manifest needs the dataset ROOT URL too (paths are resolved against it)")
    data_root = Path(str(root).rstrip("/").rsplit("/", 1)[-1]) if remote else (
        Path(root) if root is not None else Path(manifest).resolve().parent)
    config, source = load_config(None if remote or not data_root.is_dir() else data_root,
                                 config_file, overrides)
    check_severity_keys(config)   # against the registry, which config does not import
    unknown = unknown_patterns(list(config.select) + list(config.ignore))
    if unknown:
        raise ConfigError(f"--select/--ignore pattern(s) match no check: {', '.join(unknown)} "
                          "(see `dsaudit checks`)")
    return Prepared(config, source, data_root, remote)


def _path_arg(value: Any, what: str) -> Any:
    """A local path as a Path, a URL (s3://...) as a string; "" is refused (it would be the cwd)."""
    from dsaudit.index.io import is_remote, local_path

    if value is None:
        return None
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str):
        raise DatasetError(f"{what} must be a path or a URL, not {type(value).__name__}")
    if text == "" or local_path(text) == "":
        raise DatasetError(f"empty path given for {what} (use . for the current folder)")
    return text if is_remote(text) else Path(local_path(text))


# -- the report ----------------------------------------------------------------------------------

@dataclass
class Report:
    """The result of one scan, for notebooks and scripts.

    ``passed`` is the gate's verdict (as the CLI's exit code 0), ``findings`` are typed
    :class:`~dsaudit.findings.Finding` objects (check ID, severity, paths, evidence), ``result``
    the complete :class:`~dsaudit.findings.ScanResult` the renderers read."""

    result: ScanResult
    notes: list[str] = field(default_factory=list)
    data_root: Path | None = None   # the local dataset folder: save() never writes inside it

    @property
    def passed(self) -> bool:
        return bool(self.result.gate.get("passed"))

    @property
    def exit_code(self) -> int:
        return int(self.result.gate.get("exit_code", 0 if self.passed else 1))

    @property
    def findings(self) -> list[Finding]:
        return list(self.result.findings)

    @property
    def check_errors(self) -> list[CheckError]:
        return list(self.result.check_errors)

    @property
    def summary(self) -> dict[str, Any]:
        return self.result.summary

    @property
    def gate(self) -> dict[str, Any]:
        return self.result.gate

    def by_check(self, check: str) -> list[Finding]:
        """Findings of one check, by ID (DSA202) or name (leak.near-duplicate-across-splits)."""
        wanted = check.strip()
        return [f for f in self.result.findings if wanted.upper() == f.check_id or wanted == f.check_name]

    def to_dict(self) -> dict[str, Any]:
        """The report.json document (strict JSON values)."""
        from dsaudit.render.json import to_document

        return to_document(self.result)

    def to_json(self, indent: int | None = 2) -> str:
        """report.json as a string: the complete, versioned result."""
        from dsaudit.render import json as json_render

        if indent == 2:
            return json_render.render(self.result)
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    def to_pandas(self, kind: str = "findings"):
        """A pandas DataFrame: ``"findings"`` has one row per finding, ``"pairs"`` one row per
        matched pair of the duplicate and leakage findings (DSA2xx evidence: paths a and b, their
        splits and labels, kind, distance, similarity, transform), with the finding's check,
        severity and fingerprint beside each pair."""
        import pandas as pd

        if kind == "findings":
            rows = [{"check_id": f.check_id, "check_name": f.check_name, "severity": str(f.severity),
                     "title": f.title, "message": f.message, "paths": list(f.paths), "n_paths": len(f.paths),
                     "subject": f.subject, "baselined": f.baselined, "fingerprint": f.fingerprint,
                     "hint": f.hint, "evidence": dict(f.evidence)} for f in self.result.findings]
            columns = ["check_id", "check_name", "severity", "title", "message", "paths", "n_paths",
                       "subject", "baselined", "fingerprint", "hint", "evidence"]
            return pd.DataFrame(rows, columns=columns)
        if kind == "pairs":
            pair_columns = ["a", "b", "split_a", "split_b", "label_a", "label_b", "kind", "distance",
                            "similarity", "transform"]
            rows = []
            for f in self.result.findings:
                pairs = f.evidence.get("pairs") if isinstance(f.evidence, Mapping) else None
                for pair in pairs or []:
                    if isinstance(pair, Mapping) and "a" in pair and "b" in pair:
                        rows.append({"check_id": f.check_id, "severity": str(f.severity),
                                     "fingerprint": f.fingerprint, **{c: pair.get(c) for c in pair_columns}})
            return pd.DataFrame(rows, columns=["check_id", "severity", "fingerprint", *pair_columns])
        raise ValueError(f"to_pandas() kind must be 'findings' or 'pairs', not {kind!r}")

    def save(self, out: str | os.PathLike, formats: str | Iterable[str] = ("json", "html")) -> list[Path]:
        """Write the reports into the folder `out` (created), as `dsaudit scan -o OUT -f FORMATS`
        would, and return their paths. Refuses a folder inside the scanned dataset."""
        from dsaudit.reports import FORMATS, REPORTS, write_reports

        chosen = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)
                  if str(f).strip()]
        bad = [f for f in chosen if f not in FORMATS]
        if bad or not chosen:
            raise ConfigError(f"unknown format {', '.join(bad) or repr(formats)} (choose from {', '.join(FORMATS)})")
        out_path = Path(out)
        if self.data_root is not None and self.data_root.is_dir():
            targets = [out_path] + [out_path / REPORTS[f][0] for f in chosen]
            if any(is_inside(t, self.data_root) for t in targets):
                raise ConfigError(f"the report folder {display_path(str(out_path))} is inside the dataset; "
                                  "dsaudit never writes into a dataset: save somewhere else")
        return write_reports(self.result, out_path, chosen)

    def to_html(self) -> str:
        """The self-contained HTML report (as report.html)."""
        from dsaudit.render import html

        return html.render(self.result)

    def _repr_html_(self) -> str:
        """The HTML report inline in a notebook, inside a sandboxed iframe.

        The report's own Content-Security-Policy (no network, only its script by hash) travels in
        the srcdoc document, so it holds inside the frame as in a browser tab; ``sandbox=
        "allow-scripts"`` without ``allow-same-origin`` gives the frame an opaque origin, so its
        script (sorting, filtering) can never reach the notebook page, its cookies or its kernel."""
        from markupsafe import escape

        page = self.to_html()
        return (f'<iframe class="dsaudit-report" title="dsaudit report" sandbox="allow-scripts" '
                f'referrerpolicy="no-referrer" style="width:100%;height:720px;border:1px solid #ccc" '
                f'srcdoc="{escape(page)}"></iframe>')

    def __repr__(self) -> str:
        c = self.result.gate.get("counts", {})
        verdict = "passed" if self.passed else "FAILED"
        return (f"<dsaudit.Report {self.result.root!r}: gate {verdict} (fail-on {self.result.gate.get('fail_on')}), "
                f"{c.get('error', 0)} error(s), {c.get('warning', 0)} warning(s), {c.get('info', 0)} info, "
                f"{self.result.summary.get('files', 0)} files>")


def load_report(path: str | os.PathLike) -> Report:
    """A Report from a report.json written earlier (by the CLI or Report.save)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return Report(ScanResult.from_dict(data))


# -- scanning ------------------------------------------------------------------------------------

def scan(root: str | os.PathLike | None = None, *, manifest: str | os.PathLike | None = None,
         config: str | os.PathLike | None = None, baseline: str | os.PathLike | None = None,
         verbose: bool = False, **options: Any) -> Report:
    """Scan a dataset folder (``ROOT/<split>/<class>/`` or ``ROOT/<class>/``), a CSV manifest, or
    a URL, and return its :class:`Report`. Keyword options are the CLI's, by configuration key:
    ``dsaudit.scan("data/", batch_size=32, validation_split=0.2, fail_on="warning")``.

    `config` is a dsaudit.toml or pyproject.toml (found beside ROOT when not given, as on the
    command line; options win over it), `baseline` a file from `dsaudit baseline`. Notes about how
    the scan ran (cache off, a probe skipped) are kept in ``Report.notes`` and, with
    `verbose`, printed to stderr. As on the command line, the probe CNN trains by default only when
    cross-split leakage is found and TensorFlow is installed (``probe=False`` never trains it)."""
    root_arg = _path_arg(root, "the dataset root")
    manifest_arg = _path_arg(manifest, "manifest")
    overrides = overrides_from_options(options)
    prepared = prepare(root_arg, manifest_arg, Path(config) if config is not None else None, overrides)
    return run(prepared, root_arg, manifest_arg, baseline=Path(baseline) if baseline is not None else None,
               verbose=verbose)


def run(prepared: Prepared, root: Any, manifest: Any = None, *, baseline: Path | None = None,
        verbose: bool = False, layout: Any = None, command: str = "") -> Report:
    """Run the pipeline on prepared arguments and wrap the result. Raises DatasetError, ConfigError."""
    import sys

    from dsaudit.pipeline import scan as run_pipeline
    from dsaudit.policy import BaselineError

    notes: list[str] = []

    def notify(message: str) -> None:
        notes.append(message)
        if verbose:
            from dsaudit.render.terminal import printable

            sys.stderr.write(f"dsaudit: {printable(message)}\n")

    try:
        result = run_pipeline(root, prepared.config, manifest, baseline=baseline, thumbnails=True,
                              notify=notify, command=command or "dsaudit.scan()", layout=layout)
    except BaselineError as exc:
        raise ConfigError(str(exc)) from None
    if prepared.source is not None:
        result.meta["config_file"] = display_path(str(prepared.source))
    local = None if prepared.remote else prepared.data_root
    return Report(result, notes, local)


def scan_datasets(*, train: Any = None, val: Any = None, test: Any = None,
                  config: str | os.PathLike | None = None, baseline: str | os.PathLike | None = None,
                  verbose: bool = False, **options: Any) -> Report:
    """Scan what the loaders you already built yield: ``dsaudit.scan_datasets(train=train_ds,
    val=val_ds)`` with Keras datasets from ``image_dataset_from_directory`` (their ``file_paths``
    and ``class_names``) or PyTorch ``ImageFolder`` / ``Subset`` / ``ConcatDataset`` objects
    (``samples``, ``classes``, ``root``; ``dataset`` and ``indices``), mixed freely, by split.

    Their files and labels become manifest rows scanned by the same index and checks as
    ``dsaudit.scan``; neither framework is imported (the objects are read by their attributes).
    Options and errors are those of :func:`scan`; the report's root is the folder that holds all
    the files."""
    from dsaudit.loaders.objects import layout_from_datasets

    given = {split: obj for split, obj in (("train", train), ("val", val), ("test", test)) if obj is not None}
    if not given:
        raise DatasetError("give at least one dataset: dsaudit.scan_datasets(train=..., val=...)")
    overrides = overrides_from_options(options)
    layout = layout_from_datasets(given)
    prepared = prepare(layout.root, None, Path(config) if config is not None else None, overrides)
    return run(prepared, layout.root, None, baseline=Path(baseline) if baseline is not None else None,
               verbose=verbose, layout=layout, command="dsaudit.scan_datasets()")
