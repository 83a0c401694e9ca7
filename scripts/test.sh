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
cargo test --workspace --all-features --locked 2>&1 | tee target/test-output.txt
# A summary line counts passes and failures across every test binary, for people and CI.
python3 - <<'PY'
import re
passed = failed = ignored = 0
for line in open("target/test-output.txt", encoding="utf-8", errors="replace"):
    m = re.search(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
    if m:
        passed += int(m[1]); failed += int(m[2]); ignored += int(m[3])
print(f"\n{passed} passed, {failed} failed, {ignored} skipped")
PY
