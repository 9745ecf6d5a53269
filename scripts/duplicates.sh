#!/usr/bin/env bash
# Prints the duplicate percentages after kill -9: two files of numbered lines (one rotated by
# rename, one by copytruncate), the agent killed twice and restarted, over tcp; and the http
# sink killed once among 500 and 429 answers. Runs the two integration tests of
# tests/it/durability.rs (the test profile is optimized) and prints their DUPLICATES lines.
#
#   scripts/duplicates.sh              # 200,000 lines per file
#   DUP_LINES=1000000 scripts/duplicates.sh
#   TAILSHIP_IT_BIN=/tmp/tailship-before scripts/duplicates.sh   # another build of the agent
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cargo test --locked --test it -- --exact \
    durability::kill9_twice_with_rename_and_copytruncate_rotation_loses_nothing_and_duplicates_little \
    durability::http_kill9_among_500s_and_429s_duplicates_about_a_batch_per_request_in_flight \
    --nocapture --test-threads 1 >"$log" 2>&1; then
    cat "$log" >&2
    echo "duplicates.sh: the tests failed (output above)" >&2
    exit 1
fi
grep '^DUPLICATES' "$log"
