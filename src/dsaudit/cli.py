"""The command line: a thin typer layer over pipeline.scan, mapping errors to exit codes.

Exit codes: 0 the gate passed; 1 the gate failed (findings at or above --fail-on, or a check
crashed); 2 usage error or an unusable dataset root. Bad input is one line on stderr, never a
traceback (set DSAUDIT_DEBUG=1 to see one for a genuine bug).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from dsaudit import __version__
from dsaudit.render.terminal import printable
from dsaudit.reports import FORMATS, REPORTS, render_report, write_reports
from dsaudit.safe_write import UnsafeTarget, check_target, write_atomically

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Audit an image-classification dataset: integrity, leakage, balance, batching.")


class UsageError(Exception):
    """Wrong options or files; exit 2 with one line."""


COLORS = ("auto", "always", "never")


def console_for(color: str = "auto", stderr: bool = False) -> Console:
    """A rich Console that honours --color: always (even into a pipe), never (no escape sequences
    at all), auto (colour on a terminal, unless NO_COLOR is set to anything non-empty, as
    https://no-color.org asks). Rich wraps at 80 columns when the stream is no terminal, which cut
    paths and titles mid-line in `dsaudit scan ... | tee log` or a CI log: lines are not wrapped
    there (soft wrap), so each one stays whole for grep."""
    soft = not (sys.stderr if stderr else sys.stdout).isatty()
    if color == "always":
        return Console(stderr=stderr, highlight=False, force_terminal=True, soft_wrap=soft)
    if color == "never" or os.environ.get("NO_COLOR"):
        return Console(stderr=stderr, highlight=False, color_system=None, soft_wrap=soft)
    return Console(stderr=stderr, highlight=False, soft_wrap=soft)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _fail(message: str, code: int = 2) -> None:
    # one line, never wrapped; printable(): messages quote paths and names, control characters and all
    sys.stderr.write(f"dsaudit: error: {printable(message)}\n")
    raise typer.Exit(code)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dsaudit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """dsaudit: find what is wrong with an image dataset before it wastes a training run."""


def _split_list(values: Optional[list[str]]) -> Optional[list[str]]:
    if not values:
        return None
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def _progress_factory(enabled: bool):
    if not enabled:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=_stderr(), transient=True)

    def factory(total: int):
        progress.start()
        task = progress.add_task("indexing", total=total)
        return lambda n: progress.advance(task, n)

    return factory, progress


def run_scan(root: Optional[Path], *, manifest: Optional[Path] = None, out: Optional[Path] = None,
             formats: str = "json,html", overrides: Optional[dict] = None, config_file: Optional[Path] = None,
             baseline: Optional[Path] = None, quiet: bool = False, verbose: bool = False,
             command: str = "", color: str = "auto") -> int:
    """Everything `dsaudit scan` does; returns the exit code. Shared with `demo`."""
    from dsaudit.api import prepare
    from dsaudit.config import ConfigError
    from dsaudit.index.layout import DatasetError, display_path, is_inside
    from dsaudit.pipeline import scan
    from dsaudit.policy import BaselineError

    chosen = [f.strip().lower() for f in formats.split(",") if f.strip()]
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise UsageError(f"unknown --format {', '.join(bad) or repr(formats)} (choose from {', '.join(FORMATS)})")
    to_stdout = out is not None and str(out) == "-"
    if to_stdout and len(chosen) != 1:
        raise UsageError(f"-o - writes one report to stdout: give one --format, not {', '.join(chosen)}")
    try:  # the same argument checks and configuration loading as dsaudit.scan() in Python
        prepared = prepare(root, manifest, config_file, overrides)
    except (ConfigError, DatasetError) as exc:
        raise UsageError(str(exc)) from None
    config, source, data_root, remote = prepared.config, prepared.source, prepared.data_root, prepared.remote
    out = out if out is not None else Path("reports") / (Path(os.path.realpath(data_root)).name or "dataset")
    if not remote and data_root.is_dir() and not to_stdout:
        if is_inside(out, data_root):
            raise UsageError(f"the report folder {display_path(str(out))} is inside the dataset; dsaudit never "
                             "writes into a dataset: pass --out somewhere else")
        # reports are written through symlinks (see safe_write): one into the dataset is refused too
        linked = [out / REPORTS[f][0] for f in chosen if is_inside(out / REPORTS[f][0], data_root)]
        if linked:
            raise UsageError(f"the report {display_path(str(linked[0]))} is a link into the dataset; dsaudit "
                             "never writes into a dataset: remove the link or pass --out somewhere else")
    if not to_stdout:
        _check_targets([out / REPORTS[f][0] for f in chosen])  # before the scan, not after it
    show_progress = not quiet and sys.stderr.isatty() and not os.environ.get("CI")
    factory, progress = _progress_factory(show_progress)
    try:
        def notify(msg: str) -> None:
            if quiet:
                return
            msg = printable(msg)  # notes quote paths
            if progress is not None:  # print above a live progress bar instead of through it
                progress.console.print(f"dsaudit: {msg}", markup=False, highlight=False)
            else:
                sys.stderr.write(f"dsaudit: {msg}\n")

        result = scan(root, config, manifest, baseline=baseline, command=command,
                      thumbnails="html" in chosen, progress=factory, notify=notify)
    except (DatasetError, BaselineError, ConfigError) as exc:  # ConfigError: a --group-regex over its time budget
        raise UsageError(str(exc)) from None
    finally:
        if progress is not None:
            progress.stop()
    if source is not None:
        result.meta["config_file"] = display_path(str(source))
    if to_stdout:  # only the report on stdout, so a machine reader can parse it; the summary goes to stderr
        sys.stdout.write(render_report(result, chosen[0]))
        sys.stdout.flush()
        written = []
    else:
        try:
            written = write_reports(result, out, chosen)
        except UnsafeTarget as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            raise UsageError(f"cannot write reports to {display_path(str(out))}: {exc.strerror or exc}") from None
    if not quiet:
        from dsaudit.render import terminal

        console = console_for(color, stderr=to_stdout)
        terminal.render(result, console, verbose=verbose)
        if written:
            console.print("Reports: " + ", ".join(printable(display_path(str(p))) for p in written), markup=False)
    return int(result.gate["exit_code"])


def _note(msg: str) -> None:
    sys.stderr.write(f"dsaudit: {printable(msg)}\n")


def _check_targets(paths: list[Path]) -> None:
    """Refuse output paths that name a FIFO, socket, device, folder or read-only file (safe_write)."""
    for path in paths:
        try:
            check_target(path)
        except UnsafeTarget as exc:
            raise UsageError(str(exc)) from None


def _check_baseline_output(path: Path) -> None:
    """Refuse, before the scan runs, a baseline path that cannot become a file: an existing folder,
    or a path below something that is not a folder (writing would otherwise fail after the scan)."""
    from dsaudit.index.layout import display_path

    shown = display_path(str(path))
    if path.is_dir():
        raise UsageError(f"--output {shown} is a folder; give a file name such as "
                         f"{shown.rstrip('/')}/dsaudit-baseline.json")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"cannot write --output {shown}: {display_path(str(parent))} is not a folder")
            break
    _check_targets([path])


def _root_arg(root: Optional[str]):
    """A local ROOT becomes a Path; a URL (s3://...) stays a string for the remote layer."""
    from dsaudit.index.io import is_remote, local_path

    if root is None:
        return None
    # Path("") is the current folder: an unset shell variable ("$DATA", "file://$DATA") must not scan it
    if root == "" or local_path(root) == "":
        _fail("empty path given for the dataset ROOT or --manifest (use . for the current folder)")
    return root if is_remote(root) else Path(local_path(root))  # file:///data/x is the folder /data/x


def _out_arg(value: Optional[str], option: str) -> Optional[Path]:
    """An output path option as a Path. The option is typed str because typer turns "" into
    Path("."): an unset shell variable (-o "$OUT") would write reports, a baseline or a cache into
    the current folder without a word."""
    if value is None:
        return None
    if value == "":
        _fail(f"empty path given for {option} (use . for the current folder)")
    return Path(value)


def _guard(fn, *args, **kwargs) -> int:
    """Run fn and turn expected errors into one line + exit 2; unexpected ones too, unless debugging.
    SIGTERM stops it as Ctrl-C does (signals.py): one line, exit 143 (130 for Ctrl-C)."""
    from dsaudit.signals import Terminated, stop_on_sigterm

    try:
        with stop_on_sigterm():
            return fn(*args, **kwargs)
    except UsageError as exc:
        _fail(str(exc))
    except typer.Exit:
        raise
    except KeyboardInterrupt as exc:
        name, code = ("SIGTERM", 143) if isinstance(exc, Terminated) else ("Ctrl-C", 130)
        _fail(f"interrupted ({name}): the scan did not finish and wrote no report", code)
    except Exception as exc:  # a bug in dsaudit: say so in one line
        if os.environ.get("DSAUDIT_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set DSAUDIT_DEBUG=1 for a traceback; "
              "please report it)")
    return 2


@app.command()
def scan(
    root: Optional[str] = typer.Argument(None, help="Dataset folder: ROOT/<split>/<class>/ or ROOT/<class>/ "
                                         "(or a URL such as s3://bucket/prefix/ with dsaudit[s3]).",
                                         show_default=False),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="CSV with path,label[,split,group]; "
                                            "paths relative to the CSV."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Report folder [default: reports/<root name>]."),
    format: str = typer.Option("json,html", "--format", "-f", help="Comma-separated: json, html, junit, md, sarif."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="error | warning | info | never [default: error]."),
    config: Optional[Path] = typer.Option(None, "--config", help="dsaudit.toml or pyproject.toml to read."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Accepted findings (from `dsaudit baseline`)."),
    select: Optional[list[str]] = typer.Option(None, "--select", help="Only these checks (IDs, names, globs)."),
    ignore: Optional[list[str]] = typer.Option(None, "--ignore", help="Skip these checks (IDs, names, globs)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Worker processes [default: all cores]."),
    engine: Optional[str] = typer.Option(None, "--engine", help="Where the per-file work and the near-duplicate "
                                         "search run: local (process pool) or dask (needs dsaudit[dask]) "
                                         "[default: local]."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address for --engine dask "
                                            "[default: $DASK_SCHEDULER_ADDRESS, else a local Dask cluster]."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Decode everything; do not read or write the cache."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Cache folder [default: ~/.cache/dsaudit]."),
    group_regex: Optional[str] = typer.Option(None, "--group-regex", help="Regex on the relative path naming "
                                              "a sample's group (patient, source); group 1 if present."),
    split: Optional[list[str]] = typer.Option(None, "--split", help="SPLIT=FOLDER (repeatable): use these folders "
                                              "of ROOT as the train/val/test splits instead of reading the layout."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Training batch size to check."),
    val_batch_size: Optional[int] = typer.Option(None, "--val-batch-size", help="Validation/test batch size."),
    max_batch_size: Optional[int] = typer.Option(None, "--max-batch-size",
                                                 help="Upper bound for recommended batch sizes."),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch",
                                                  help="steps_per_epoch you pass to fit()."),
    validation_steps: Optional[int] = typer.Option(None, "--validation-steps",
                                                   help="validation_steps you pass to fit()."),
    validation_split: Optional[float] = typer.Option(None, "--validation-split",
                                                     help="Simulate Keras validation_split=F."),
    val_split: Optional[str] = typer.Option(None, "--val-split", help="The split --validation-steps counts "
                                            "[default: val, else the --validation-split tail, else test]."),
    keras_split: Optional[float] = typer.Option(None, "--keras-split",
                                                help="Simulate image_dataset_from_directory(validation_split=F, "
                                                "subset='both', seed=--seed) exactly."),
    probe: Optional[bool] = typer.Option(None, "--probe/--no-probe", help="Train the probe CNN [default: when "
                                         "cross-split leakage is found and TensorFlow is installed]."),
    probe_budget: Optional[float] = typer.Option(None, "--probe-budget", help="Probe wall-time budget in seconds."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for everything random [default: 0]."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no terminal summary."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every finding in the terminal."),
    color: str = typer.Option("auto", "--color", help="auto | always | never: colour in the terminal summary "
                              "[auto: on a terminal, unless NO_COLOR is set]."),
) -> None:
    """Scan a dataset, write reports, and exit 0 (passed), 1 (gate failed) or 2 (usage error).

    `-o -` writes the one report of --format to stdout (the summary and notes go to stderr)."""
    root_arg, manifest_arg = _root_arg(root), _root_arg(manifest)
    out_dir, cache_path = _out_arg(out, "--out"), _out_arg(cache_dir, "--cache-dir")
    if color.strip().lower() not in COLORS:
        _fail(f"--color must be auto, always or never, not {color!r}")
    overrides = {
        "fail_on": fail_on, "select": _split_list(select), "ignore": _split_list(ignore), "jobs": jobs,
        "cache": False if no_cache else None, "cache_dir": str(cache_path) if cache_path else None,
        "engine": engine.strip().lower() if engine else None, "scheduler": scheduler,
        "seed": seed, "splits": split or None, "leakage.group_regex": group_regex, "batch.batch_size": batch_size,
        "batch.val_batch_size": val_batch_size, "batch.max_batch_size": max_batch_size,
        "batch.steps_per_epoch": steps_per_epoch, "batch.validation_steps": validation_steps,
        "batch.validation_split": validation_split, "batch.val_split": val_split,
        "batch.keras_split": keras_split,
        "probe.mode": None if probe is None else ("on" if probe else "off"),
        "probe.budget_seconds": probe_budget,
    }
    command = "dsaudit " + " ".join(shlex.quote(os.fsencode(a).decode("utf-8", "backslashreplace"))
                                    for a in sys.argv[1:])
    code = _guard(run_scan, root_arg, manifest=manifest_arg, out=out_dir, formats=format, overrides=overrides,
                  config_file=config, baseline=baseline, quiet=quiet, verbose=verbose, command=command,
                  color=color.strip().lower())
    raise typer.Exit(code)


@app.command()
def checks() -> None:
    """List every check: ID, name, default severity and what it finds."""
    from rich.table import Table

    from dsaudit.checks.registry import all_checks

    table = Table(show_lines=False)
    for col in ("ID", "name", "severity", "finds"):
        table.add_column(col)
    for c in all_checks():
        table.add_row(c.id, c.name, str(c.severity), c.summary())
    Console(highlight=False, width=max(120, Console().width)).print(table)


@app.command()
def explain(check_id: str = typer.Argument(..., help="A check ID such as DSA202, or its name.")) -> None:
    """Explain a check: what it finds, why it matters, how to fix it, and its thresholds."""
    from dsaudit.checks.registry import get_check

    check = get_check(check_id)
    if check is None:
        _fail(f"no check called {check_id!r} (see `dsaudit checks`)")
    console = Console(highlight=False)
    console.print(f"{check.id}  {check.name}  (default severity: {check.severity})", markup=False)
    console.print(check.summary(), markup=False)
    console.print(f"\nWhy: {check.why()}", markup=False)
    console.print(f"\nFix: {check.fix()}", markup=False)
    if check.thresholds():
        console.print(f"\nThresholds: {check.thresholds()}", markup=False)


@app.command()
def baseline(
    root: Optional[str] = typer.Argument(None, help="Dataset folder (or a URL such as s3://bucket/prefix/).",
                                         show_default=False),
    output: str = typer.Option(..., "--output", "-o", help="Baseline file to write (JSON)."),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="CSV manifest instead of folders."),
    config: Optional[Path] = typer.Option(None, "--config", help="dsaudit.toml or pyproject.toml to read."),
    group_regex: Optional[str] = typer.Option(None, "--group-regex", help="As for scan."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j"),
    select: Optional[list[str]] = typer.Option(None, "--select", help="As for scan."),
    ignore: Optional[list[str]] = typer.Option(None, "--ignore", help="As for scan."),
    no_cache: bool = typer.Option(False, "--no-cache", help="As for scan."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="As for scan."),
    engine: Optional[str] = typer.Option(None, "--engine", help="As for scan."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="As for scan."),
    seed: Optional[int] = typer.Option(None, "--seed", help="As for scan."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="As for scan."),
    val_batch_size: Optional[int] = typer.Option(None, "--val-batch-size", help="As for scan."),
    max_batch_size: Optional[int] = typer.Option(None, "--max-batch-size", help="As for scan."),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch", help="As for scan."),
    validation_steps: Optional[int] = typer.Option(None, "--validation-steps", help="As for scan."),
    validation_split: Optional[float] = typer.Option(None, "--validation-split", help="As for scan."),
) -> None:
    """Write the current findings as accepted ones: later scans with --baseline fail only on new ones.
    Give it the options the scans will get (batch sizes, --select, --group-regex): findings that
    depend on them are accepted only as they were found."""
    root_arg, manifest_arg = _root_arg(root), _root_arg(manifest)
    out_file: Path = _out_arg(output, "--output")  # type: ignore[assignment]  # required: never None
    cache_path = _out_arg(cache_dir, "--cache-dir")
    overrides = {
        "leakage.group_regex": group_regex, "jobs": jobs, "probe.mode": "off",
        "select": _split_list(select), "ignore": _split_list(ignore),
        "cache": False if no_cache else None, "cache_dir": str(cache_path) if cache_path else None,
        "engine": engine.strip().lower() if engine else None, "scheduler": scheduler, "seed": seed,
        "batch.batch_size": batch_size, "batch.val_batch_size": val_batch_size,
        "batch.max_batch_size": max_batch_size, "batch.steps_per_epoch": steps_per_epoch,
        "batch.validation_steps": validation_steps, "batch.validation_split": validation_split,
    }

    def run() -> int:
        from dsaudit.config import ConfigError, load_config
        from dsaudit.index.layout import DatasetError, display_path, is_inside
        from dsaudit.pipeline import scan as run_pipeline
        from dsaudit.checks.registry import unknown_patterns
        from dsaudit.policy import baseline_document

        if root_arg is None and manifest_arg is None:
            raise UsageError("give a dataset ROOT folder, or --manifest FILE.csv")
        remote = isinstance(root_arg, str) or isinstance(manifest_arg, str)  # URLs stay strings
        if remote and root_arg is None:
            raise UsageError("a remote --manifest needs the dataset ROOT URL too (paths are resolved against it)")
        data_root = None if remote else (root_arg if root_arg is not None
                                         else manifest_arg.resolve().parent)  # type: ignore[union-attr]
        local_root = data_root if data_root is not None and data_root.is_dir() else None
        if local_root is not None and is_inside(out_file, local_root):
            raise UsageError("the baseline file would be inside the dataset; write it elsewhere")
        _check_baseline_output(out_file)
        try:
            cfg, _ = load_config(local_root, config, overrides)
            unknown = unknown_patterns(list(cfg.select) + list(cfg.ignore))
            if unknown:
                raise UsageError(f"--select/--ignore pattern(s) match no check: {', '.join(unknown)} "
                                 "(see `dsaudit checks`)")
            result = run_pipeline(root_arg, cfg, manifest_arg, notify=_note)
        except (ConfigError, DatasetError) as exc:
            raise UsageError(str(exc)) from None
        doc = baseline_document(result.findings)
        try:
            out_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(out_file, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        except UnsafeTarget as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            raise UsageError(f"cannot write the baseline to {display_path(str(out_file))}: "
                             f"{exc.strerror or exc}") from None
        typer.echo(f"Wrote {len(doc['accepted'])} accepted finding(s) to {printable(display_path(str(out_file)))}")
        return 0

    raise typer.Exit(_guard(run))


@app.command()
def demo(
    folder: Optional[str] = typer.Argument(None, help="Where to build the example dataset [default: a new "
                                           "temporary folder].", show_default=False),
    out: str = typer.Option("reports/demo", "--out", "-o", help="Report folder."),
    probe: bool = typer.Option(False, "--probe/--no-probe", help="Also train the probe CNN (needs TensorFlow)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Build the built-in example dataset (real digit images with planted flaws) and scan it."""
    target_arg = _out_arg(folder, "the demo folder")
    out_dir: Path = _out_arg(out, "--out")  # type: ignore[assignment]  # has a default: never None

    def run() -> int:
        import tempfile

        if target_arg is None:  # a temporary folder, removed afterwards (they used to pile up in /tmp)
            with tempfile.TemporaryDirectory(prefix="dsaudit-demo-") as tmp:
                return build_and_scan(Path(tmp) / "digits", kept=False)
        return build_and_scan(target_arg, kept=True)

    def build_and_scan(target: Path, kept: bool) -> int:
        from dsaudit.demo import DEMO_GROUP_REGEX, build_demo_dataset
        from dsaudit.index.layout import display_path

        if target.exists() and not target.is_dir():
            raise UsageError(f"{display_path(str(target))} is not a folder; give a new or empty folder")
        if target.exists() and any(target.iterdir()):
            raise UsageError(f"{display_path(str(target))} is not empty; give a new or empty folder")
        try:
            build_demo_dataset(target)
        except OSError as exc:  # a parent that is a file, no permission, a full disk
            raise UsageError(f"cannot build the demo dataset in {display_path(str(target))}: "
                             f"{exc.strerror or exc}") from None
        typer.echo(f"Built the demo dataset in {printable(display_path(str(target)))}"
                   + ("" if kept else " (removed after the scan; give a FOLDER to keep it)"))
        code = run_scan(target, out=out_dir, formats="json,html,junit,md", quiet=quiet,
                        overrides={"batch.batch_size": 32, "batch.validation_split": 0.2,
                                   "probe.mode": "on" if probe else "off",
                                   "leakage.group_regex": DEMO_GROUP_REGEX},
                        command="dsaudit demo")
        typer.echo(f"Report: {printable(display_path(str(out_dir / 'report.html')))} (the demo plants flaws on "
                   f"purpose: a scan of this data fails its gate with exit code {code}; `dsaudit demo` itself "
                   "exits 0 when it ran)")
        return 0

    raise typer.Exit(_guard(run))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
