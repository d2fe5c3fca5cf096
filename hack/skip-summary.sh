#!/usr/bin/env bash
# Ends `make test` with what skipped: one "Skipped: <package>/<test>: <reason>"
# line per test that internal/testing/skiplog recorded in the file $1, then a
# line naming the suites (packages) that skipped tests, or "No suite skipped."
set -euo pipefail
log=$1
if [[ ! -s $log ]]; then
  echo "No suite skipped."
  exit 0
fi
sort -u "$log" | sed 's/^/Skipped: /'
sort -u "$log" | awk '
  match($0, /\/(Test|Fuzz|Benchmark|Example)[^:]*: /) {
    pkg = substr($0, 1, RSTART - 1)
    if (!(pkg in n)) order[++k] = pkg
    n[pkg]++
  }
  END {
    s = ""
    for (i = 1; i <= k; i++) s = s (i > 1 ? ", " : "") order[i] " (" n[order[i]] (n[order[i]] > 1 ? " tests" : " test") ")"
    print "Skipped suites: " s ". hack/test-deps.sh says what they need."
  }'
