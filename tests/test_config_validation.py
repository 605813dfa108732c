"""Configuration values are checked when loaded: every numeric key has a range (nan and inf never
pass), severity overrides name real checks, regexes and scheduler addresses are well formed, and
choices are case-insensitive. Each violation is one line and exit 2, never a crash later on."""

import math
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from dsaudit.cli import app
from dsaudit.config import RANGES, AuditConfig, ConfigError, load_config, numeric_settings
from imagery import make_split_dataset

runner = CliRunner()


def config_error(tmp_path, toml: str) -> str:
    """The message of the ConfigError that loading `toml` raises (fails the test if none)."""
    path = tmp_path / "dsaudit.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(None, path)
    return str(info.value)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    make_split_dataset(root, {"train": {"cat": 4, "dog": 4}, "val": {"cat": 2, "dog": 2}}, size=32)
    return root


def scan(data, tmp_path, *args):
    return runner.invoke(app, ["scan", str(data), "-o", str(tmp_path / "out"), "-f", "json", "-q",
                               "--no-probe", "-j", "1", *map(str, args)], catch_exceptions=False)


def assert_one_line_usage_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("dsaudit: error: ") and "internal error" not in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- ranges ------------------------------------------------------------------------------------

def test_default_config_validates():
    cfg, source = load_config(None)
    assert source is None and cfg == AuditConfig()


def test_every_numeric_setting_has_a_range_that_holds_its_default():
    settings = numeric_settings(AuditConfig())
    assert {key for key, _, _ in settings} == set(RANGES)
    for key, default, _ in settings:
        assert default is None or default in RANGES[key], key


def _scan_exit_2(root, tmp_path, *args: str) -> str:
    """Run `dsaudit scan ROOT ARGS` in a fresh process; assert exit 2 with one line on stderr and no
    traceback; return that line."""
    env = dict(os.environ, DSAUDIT_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("DSAUDIT_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "dsaudit.cli", "scan", str(root), "-o", str(tmp_path / "o"),
                           "-q", "--no-probe", *args], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def _outside(key: str, integer: bool):
    """A value just outside the range of `key`: below its lower end, else above its upper end."""
    r = RANGES[key]
    if r.lo is not None:
        return r.lo if r.lo_open else r.lo - 1
    return r.hi if r.hi_open else r.hi + 1


def test_each_setting_is_declared_once_with_its_meaning():
    """config.py declares each setting once (setting(default, range, doc)); RANGES and the settings
    table of docs/checks.md are made from those declarations."""
    from dsaudit.checks.catalogue import settings_table
    from dsaudit.config import declared_settings

    declared = declared_settings()
    assert [k for k, _, _, doc in declared if not doc] == []
    assert {k: r for k, _, r, _ in declared if r is not None} == RANGES
    table = "\n".join(settings_table())
    assert all(f"| `{k}` |" in table for k, _, _, _ in declared)


@pytest.mark.parametrize("key, integer", [(k, i) for k, _, i in numeric_settings(AuditConfig())])
def test_each_numeric_setting_rejects_values_outside_its_range(key, integer):
    value = _outside(key, integer)
    value = int(value) if integer else float(value)
    with pytest.raises(ConfigError, match=rf"^{key}\b.* must be .*, not ") as info:
        load_config(None, overrides={key: value})
    assert "\n" not in str(info.value)
    if not integer:
        for bad in (math.nan, math.inf, -math.inf):
            with pytest.raises(ConfigError, match=rf"^{key}\b"):
                load_config(None, overrides={key: bad})


# keys bounded by each other as well: a range end is tried with the partner at the same value
PARTNERS = {"balance.imbalance_warn_ratio": "balance.imbalance_error_ratio",
            "balance.val_share_min": "balance.val_share_max"}
PARTNERS.update({v: k for k, v in PARTNERS.items()})
# ...and keys that need another one set (with batch_size 1, as low as either may go)
PARTNERS.update({f"batch.{k}": "batch.batch_size"
                 for k in ("val_batch_size", "max_batch_size", "steps_per_epoch", "validation_steps")})


@pytest.mark.parametrize("key, integer", [(k, i) for k, _, i in numeric_settings(AuditConfig())])
def test_closed_range_ends_are_accepted(key, integer):
    r = RANGES[key]
    for end, is_open in ((r.lo, r.lo_open), (r.hi, r.hi_open)):
        if end is not None and not is_open:
            value = int(end) if integer else float(end)
            cfg, _ = load_config(None, overrides={key: value, PARTNERS.get(key, key): value})
            section, _, name = key.rpartition(".")
            assert getattr(getattr(cfg, section) if section else cfg, name) == value


@pytest.mark.parametrize("toml, key, allowed", [
    ("[balance]\nmax_ci_halfwidth = 0\n", "balance.max_ci_halfwidth", "(0, 1]"),
    ("[leakage]\nverify_threshold = nan\n", "leakage.verify_threshold", "[0, 1]"),
    ("[balance]\nimbalance_warn_ratio = inf\n", "balance.imbalance_warn_ratio", ">= 1"),
    ("[balance]\nshift_p_value = 2\n", "balance.shift_p_value", "(0, 1]"),
    ("[leakage]\nnear_threshold = 99\n", "leakage.near_threshold", "[0, 64]"),
    ("[leakage]\nknn_min_similarity = -1.5\n", "leakage.knn_min_similarity", "[-1, 1]"),
    ("[probe]\nbudget_seconds = -1\n", "probe.budget_seconds", ">= 0"),
    ("seed = -1\n", "seed", "[0, 4294967295]"),
    ("seed = 99999999999999999999\n", "seed", "[0, 4294967295]"),
    ("jobs = -1\n", "jobs", "[0, 4096]"),
])
def test_toml_values_outside_their_range_name_the_key_and_the_range(tmp_path, toml, key, allowed):
    message = config_error(tmp_path, toml)
    assert message.startswith(key) and allowed in message


def test_bounds_that_depend_on_each_other(tmp_path):
    message = config_error(tmp_path, "[balance]\nval_share_min = 0.9\nval_share_max = 0.1\n")
    assert "balance.val_share_max" in message and "balance.val_share_min" in message
    message = config_error(tmp_path, "[balance]\nimbalance_warn_ratio = 5\nimbalance_error_ratio = 4\n")
    assert "balance.imbalance_error_ratio" in message


def test_max_batch_size_below_a_batch_size_asked_for_is_a_config_error(tmp_path):
    message = config_error(tmp_path, "[batch]\nbatch_size = 32\nmax_batch_size = 16\n")
    assert message.startswith("batch.max_batch_size (--max-batch-size) is 16, below batch.batch_size") \
        and "\n" not in message
    message = config_error(tmp_path, "[batch]\nbatch_size = 8\nval_batch_size = 64\nmax_batch_size = 16\n")
    assert "batch.val_batch_size (--val-batch-size) 64" in message
    for ok in ({"batch.batch_size": 16, "batch.max_batch_size": 16},
               {"batch.batch_size": 8, "batch.val_batch_size": 12, "batch.max_batch_size": 32}):
        load_config(None, overrides=ok)


@pytest.mark.parametrize("key", ["val_batch_size", "max_batch_size", "steps_per_epoch", "validation_steps"])
def test_val_or_max_batch_size_without_batch_size_is_a_config_error(tmp_path, key):
    """Without batch_size no batch check runs, so either alone would be ignored without a word."""
    message = config_error(tmp_path, f"[batch]\n{key} = 16\n")
    assert message.startswith(f"batch.{key} (--{key.replace('_', '-')}) needs batch.batch_size (--batch-size)") \
        and "\n" not in message
    load_config(None, overrides={"batch.batch_size": 8, f"batch.{key}": 16})


@pytest.mark.parametrize("option", ["--val-batch-size", "--max-batch-size", "--steps-per-epoch",
                                    "--validation-steps"])
def test_val_or_max_batch_size_flag_without_batch_size_is_exit_2(data, tmp_path, option):
    assert_one_line_usage_error(scan(data, tmp_path, option, "16"), option, "needs", "--batch-size")
    assert not (tmp_path / "out").exists()


def test_max_batch_size_below_batch_size_on_the_command_line_is_exit_2(data, tmp_path):
    assert_one_line_usage_error(scan(data, tmp_path, "--batch-size", "32", "--max-batch-size", "8"),
                                "--max-batch-size", "--batch-size")


def test_a_float_too_large_for_a_float_is_a_config_error(tmp_path):
    message = config_error(tmp_path, "[balance]\nmax_ci_halfwidth = 1" + "0" * 400 + "\n")
    assert message.startswith("balance.max_ci_halfwidth")


def test_zero_ci_halfwidth_is_exit_2_not_a_crashed_check(data, tmp_path):
    config = tmp_path / "ci0.toml"
    config.write_text("[balance]\nmax_ci_halfwidth = 0\n")
    assert_one_line_usage_error(scan(data, tmp_path, "--config", config),
                                "balance.max_ci_halfwidth", "(0, 1]")
    assert not (tmp_path / "out").exists()


def test_nan_threshold_is_exit_2(data, tmp_path):
    config = tmp_path / "nan.toml"
    config.write_text("[leakage]\nverify_threshold = nan\n")
    assert_one_line_usage_error(scan(data, tmp_path, "--config", config), "leakage.verify_threshold", "nan")


def test_command_line_values_are_range_checked_and_name_the_option(data, tmp_path):
    assert_one_line_usage_error(scan(data, tmp_path, "--probe-budget", "-5"), "--probe-budget", ">= 0")
    assert_one_line_usage_error(scan(data, tmp_path, "--seed", "-1"), "--seed")
    assert_one_line_usage_error(scan(data, tmp_path, "--validation-split", "nan"), "--validation-split")


# -- severity overrides ------------------------------------------------------------------------

@pytest.mark.parametrize("key, why", [("DSA999", "no such check"), ("DSA2*", "globs are not accepted"),
                                      ("integrity.no-such-check", "no such check")])
def test_severity_override_of_an_unknown_check_is_an_error(tmp_path, key, why):
    """Checked against the registry (above config: config imports no check), by the CLI after
    loading and by pipeline.scan before it builds anything."""
    from dsaudit.checks.registry import check_severity_keys
    from dsaudit.pipeline import scan as run_scan

    path = tmp_path / "dsaudit.toml"
    path.write_text(f'severity = {{ "{key}" = "info" }}\n')
    cfg, _ = load_config(None, path)
    for attempt in (lambda: check_severity_keys(cfg), lambda: run_scan(tmp_path / "missing", cfg)):
        with pytest.raises(ConfigError) as info:
            attempt()
        assert str(info.value).startswith(f"severity.{key.upper()}") and why in str(info.value)


def test_severity_override_by_id_in_any_case_or_by_name_is_accepted(tmp_path):
    path = tmp_path / "dsaudit.toml"
    path.write_text('severity = { dsa201 = "info", "integrity.empty-file" = "Warning" }\n')
    cfg, _ = load_config(None, path)
    assert cfg.severity == {"DSA201": "info", "INTEGRITY.EMPTY-FILE": "warning"}


def test_unknown_check_in_severity_table_is_exit_2(data, tmp_path):
    config = tmp_path / "sev.toml"
    config.write_text('severity = { DSA999 = "info" }\n')
    assert_one_line_usage_error(scan(data, tmp_path, "--config", config), "DSA999")


# -- types -------------------------------------------------------------------------------------

@pytest.mark.parametrize("toml, message", [
    ('[batch]\nbatch_size = "32"\n', "batch.batch_size must be an integer, not the string '32'"),
    ('jobs = "4"\n', "jobs must be an integer, not the string '4'"),
    ('[balance]\nshift_p_value = "0.01"\n', "balance.shift_p_value must be a number, not the string '0.01'"),
    ('[leakage]\nknn_max_pairs = "5e10"\n', "leakage.knn_max_pairs must be a number, not the string '5e10'"),
])
def test_quoted_numbers_in_a_config_file_are_rejected(tmp_path, toml, message):
    error = config_error(tmp_path, toml)
    assert error.startswith(message) and "without quotes" in error and "\n" not in error


def test_quoted_number_is_a_one_line_usage_error(data, tmp_path):
    config = tmp_path / "dsaudit.toml"
    config.write_text('[batch]\nbatch_size = "32"\n')
    assert_one_line_usage_error(scan(data, tmp_path, "--config", config), "batch.batch_size", "'32'")


@pytest.mark.parametrize("toml, message", [
    ('[leakage]\nexact = "false"\n', "leakage.exact must be true or false, not the string 'false'"),
    ('[leakage]\nnear = "off"\n', "leakage.near must be true or false, not the string 'off'"),
    ('[leakage]\nknn_shifts = 0\n', "leakage.knn_shifts must be true or false, not 0"),
    ('cache = 1\n', "cache must be true or false, not 1"),
    ('cache = "true"\n', "cache must be true or false, not the string 'true'"),
])
def test_strings_and_numbers_for_boolean_keys_are_rejected(tmp_path, toml, message):
    error = config_error(tmp_path, toml)
    assert error.startswith(message) and "\n" not in error


def test_boolean_keys_take_toml_booleans_and_a_string_is_exit_2(data, tmp_path):
    path = tmp_path / "dsaudit.toml"
    path.write_text("cache = false\n[leakage]\nexact = false\nnear = true\nknn_shifts = false\n")
    cfg, _ = load_config(None, path)
    assert (cfg.cache, cfg.leakage.exact, cfg.leakage.near, cfg.leakage.knn_shifts) == (False, False, True, False)
    path.write_text('[leakage]\nnear = "no"\n')
    assert_one_line_usage_error(scan(data, tmp_path, "--config", path), "leakage.near", "'no'")


def test_integers_for_float_keys_and_integral_floats_for_int_keys_still_load(tmp_path):
    path = tmp_path / "dsaudit.toml"
    path.write_text("[balance]\nimbalance_warn_ratio = 3\nimbalance_error_ratio = 12\n"
                    "[leakage]\nknn_max_pairs = 1000\n[batch]\nbatch_size = 32.0\n")
    cfg, _ = load_config(None, path)
    assert cfg.balance.imbalance_warn_ratio == 3.0 and isinstance(cfg.balance.imbalance_warn_ratio, float)
    assert cfg.leakage.knn_max_pairs == 1000.0 and cfg.batch.batch_size == 32
    assert isinstance(cfg.batch.batch_size, int)


# -- regular expressions -----------------------------------------------------------------------

@pytest.mark.parametrize("regex", ["a{99999999999}", pytest.param("(" * 3000 + ")" * 3000, id="deep-nesting"),
                                   "(", "(?P<x"])
def test_group_regex_that_re_cannot_compile_is_a_config_error(regex):
    with pytest.raises(ConfigError, match="group_regex .*not a valid regular expression"):
        load_config(None, overrides={"leakage.group_regex": regex})


def test_group_regex_overflow_is_exit_2_not_an_internal_error(data, tmp_path):
    assert_one_line_usage_error(scan(data, tmp_path, "--group-regex", "a{99999999999}"),
                                "--group-regex", "not a valid regular expression")


def test_catastrophic_group_regex_is_exit_2_instead_of_a_hang(tmp_path):
    """(a+)+$ on 40 a's and a b backtracks for hours: the time budget per path stops it."""
    root = tmp_path / "data"
    make_split_dataset(root, {"train": {"cat": 2}, "val": {"cat": 2}}, size=32)
    next((root / "train" / "cat").iterdir()).rename(root / "train" / "cat" / ("a" * 40 + "b.png"))
    t0 = time.monotonic()
    err = _scan_exit_2(root, tmp_path, "-j", "1", "--group-regex", "(a+)+$")
    assert "--group-regex" in err and "'(a+)+$' ran for more than 1 s" in err, err
    assert "a" * 40 + "b.png" in err and "internal error" not in err
    assert time.monotonic() - t0 < 40


def test_group_regex_budget_leaves_no_timer_behind_and_works_off_the_main_thread():
    import signal
    import threading

    import pandas as pd

    from dsaudit.index.groups import apply_group_regex

    paths = pd.Series(["train/p1_a.png", "val/p2_b.png", "test/x.png"], index=[5, 6, 7])
    before = signal.getsignal(signal.SIGALRM)
    groups = apply_group_regex(paths, r"(p\d+)_")
    assert list(groups) == ["p1", "p2", ""] and list(groups.index) == [5, 6, 7]
    assert list(apply_group_regex(paths, r"\w+/")) == ["train/", "val/", "test/"]  # no group: the match
    assert signal.getsignal(signal.SIGALRM) is before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    out = []
    worker = threading.Thread(target=lambda: out.append(list(apply_group_regex(paths, r"(p\d+)_"))))
    worker.start()
    worker.join()
    assert out == [["p1", "p2", ""]]


# -- choices -----------------------------------------------------------------------------------

def test_choices_are_case_insensitive_in_files_and_flags(tmp_path):
    path = tmp_path / "dsaudit.toml"
    path.write_text('fail_on = "Warning"\nengine = "LOCAL"\n[probe]\nmode = " Off "\n')
    cfg, _ = load_config(None, path)
    assert (cfg.fail_on, cfg.engine, cfg.probe.mode) == ("warning", "local", "off")
    cfg, _ = load_config(None, overrides={"fail_on": "ERROR", "engine": "Dask"})
    assert (cfg.fail_on, cfg.engine) == ("error", "dask")
    with pytest.raises(ConfigError, match="fail_on .*must be error, warning, info or never"):
        load_config(None, overrides={"fail_on": "sometimes"})


def test_fail_on_in_capitals_is_accepted_like_engine(data, tmp_path):
    (data / "train" / "cat" / "empty.png").write_bytes(b"")
    assert scan(data, tmp_path, "--fail-on", "ERROR").exit_code == 1
    assert scan(data, tmp_path, "--fail-on", "NEVER", "--engine", "LOCAL").exit_code == 0


# -- the Dask scheduler address ----------------------------------------------------------------

@pytest.mark.parametrize("address", ["tcp://10.0.0.5:8786", "10.0.0.5:8786", "localhost:8786",
                                     "tls://scheduler.example.org:8786", "tcp://[::1]:8786",
                                     "ws://host-1:80", "inproc://10.0.0.5/1234/1"])
def test_well_formed_scheduler_addresses(address):
    from dsaudit.index.dask_engine import address_problem

    assert address_problem(address) is None
    assert load_config(None, overrides={"scheduler": address})[0].scheduler == address


@pytest.mark.parametrize("address, why", [
    ("not a url", "is not a Dask scheduler address"), ("tcp://localhost", "is not a Dask scheduler"),
    ("127.0.0.1", "is not a Dask scheduler"), ("foo://host:1", "unknown scheme 'foo'"),
    ("tcp://host:99999", "not between 1 and 65535"), ("tcp://host:0", "not between 1 and 65535"),
])
def test_malformed_scheduler_addresses_are_config_errors(address, why):
    with pytest.raises(ConfigError, match=f"^scheduler \\(--scheduler\\): .*{why}"):
        load_config(None, overrides={"scheduler": address})


def test_malformed_scheduler_is_exit_2_at_once(data, tmp_path):
    t0 = time.monotonic()
    err = _scan_exit_2(data, tmp_path, "--engine", "dask", "--scheduler", "not a url")
    assert "is not a Dask scheduler address" in err, err
    assert time.monotonic() - t0 < 20  # it used to wait 40 s in a failed Client's __del__


def test_failed_connection_is_one_clean_error_without_a_stray_traceback(tmp_path):
    pytest.importorskip("distributed")
    # tls:// without a TLS configuration fails inside Client(): TypeError, then a half-made client
    # whose __del__ waited twice the timeout and printed "Exception ignored in Client.__del__"
    code = ("from dsaudit.index import dask_engine\n"
            "try:\n"
            "    dask_engine.connect('tls://127.0.0.1:9', timeout='2s')\n"
            "except dask_engine.EngineError as exc:\n"
            "    print('EngineError:', exc)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.stdout.startswith("EngineError: cannot connect to the Dask scheduler at tls://127.0.0.1:9"), \
        proc.stdout + proc.stderr
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_malformed_scheduler_from_the_environment_is_an_engine_error(monkeypatch):
    pytest.importorskip("distributed")
    from dsaudit.index import dask_engine

    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "not a url")
    with pytest.raises(dask_engine.EngineError, match=r"^\$DASK_SCHEDULER_ADDRESS: 'not a url' is not"):
        dask_engine.connect("")
