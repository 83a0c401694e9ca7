#!/usr/bin/env bash
# Runs every check and test of tabby: formatting, lints, licences, and the whole test suite
# (unit, property, conformance vectors from ../shared, multi-process datastore tests, CLI).
# Usage: scripts/test.sh        (as root on CI; CI=true makes missing conformance vectors fatal)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

echo "== licences"
python3 scripts/check-licenses.py

echo "== cargo test"
# The test log goes where cargo builds (CARGO_TARGET_DIR when set, so a worktree can share one).
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
cargo test --workspace --all-features --locked 2>&1 | tee "$target_dir/test-output.txt"
# A summary line counts passes and failures across every test binary, for people and CI.
TEST_OUTPUT="$target_dir/test-output.txt" python3 - <<'PY'
import os, re
passed = failed = ignored = 0
for line in open(os.environ["TEST_OUTPUT"], encoding="utf-8", errors="replace"):
    m = re.search(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
    if m:
        passed += int(m[1]); failed += int(m[2]); ignored += int(m[3])
print(f"\n{passed} passed, {failed} failed, {ignored} skipped")
PY
