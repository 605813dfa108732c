#!/usr/bin/env bash
# The run step of action.yml, and a local stand-in for it: install dsaudit, scan, append the
# Markdown report to $GITHUB_STEP_SUMMARY, write the step outputs to $GITHUB_OUTPUT, and exit with
# dsaudit's code (0 passed, 1 gate failed, 2 could not scan). Outside GitHub the two files are
# simply not written.
#
#   DSAUDIT_PATH=data/ DSAUDIT_ARGS="--batch-size 32" bash action/scan.sh
#
# Inputs (environment): DSAUDIT_PATH (required), DSAUDIT_ARGS (more scan options, split on
# whitespace, never globbed or evaluated), DSAUDIT_OUT (default dsaudit-report), DSAUDIT_FORMATS
# (default json,html,md,sarif; md is added), DSAUDIT_INSTALL (a pip requirement; empty: the
# checkout this script is in; "skip": none), DSAUDIT_FAIL (false: a failed gate exits 0), PYTHON.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python}"
dataset="${DSAUDIT_PATH:-}"
if [ -z "$dataset" ]; then
  echo "dsaudit action: the 'path' input (DSAUDIT_PATH) is required" >&2
  exit 2
fi
out="${DSAUDIT_OUT:-dsaudit-report}"
formats="${DSAUDIT_FORMATS:-json,html,md,sarif}"
case ",$formats," in
  *,md,*) ;;
  *) formats="$formats,md" ;;
esac

install="${DSAUDIT_INSTALL:-}"
if [ "$install" != "skip" ]; then
  "$python" -m pip install --disable-pip-version-check --quiet "${install:-$here}" || {
    echo "dsaudit action: pip install ${install:-$here} failed" >&2
    exit 2
  }
fi

set -f                                   # options are words, never globs
read -r -a extra <<< "${DSAUDIT_ARGS:-}"
set +f
"$python" -m dsaudit scan "$dataset" --out "$out" --format "$formats" ${extra[@]+"${extra[@]}"}
code=$?

if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  if [ -f "$out/report.md" ]; then
    cat "$out/report.md" >> "$GITHUB_STEP_SUMMARY"
  else
    printf '### dsaudit could not scan `%s`\n\nExit code %s: see the step log.\n' "$dataset" "$code" >> "$GITHUB_STEP_SUMMARY"
  fi
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  {
    echo "exit-code=$code"
    echo "report-dir=$out"
    if [ -f "$out/report.sarif" ]; then echo "sarif=$out/report.sarif"; fi
  } >> "$GITHUB_OUTPUT"
fi
if [ "$code" = 1 ] && [ "${DSAUDIT_FAIL:-true}" = "false" ]; then
  echo "dsaudit action: the gate failed (exit 1); fail=false, so the step passes" >&2
  exit 0
fi
exit "$code"
