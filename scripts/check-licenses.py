#!/usr/bin/env python3
"""Fails when any dependency's licence is outside the allow-list (no GPL crates).

Reads `cargo metadata`, so it needs no extra tool; deny.toml holds the same policy for
people who run cargo-deny.
"""
import json
import re
import subprocess
import sys

ALLOWED = {
    "Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Unicode-3.0",
    "Unicode-DFS-2016", "Zlib", "0BSD", "CC0-1.0", "MPL-2.0", "BSL-1.0",
    "Apache-2.0 WITH LLVM-exception", "Unlicense",
}

meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--locked"], text=True))
bad = []
for pkg in meta["packages"]:
    expr = pkg.get("license")
    if pkg["source"] is None:
        continue  # our own crates
    if not expr:
        bad.append(f"{pkg['name']} {pkg['version']}: no licence declared")
        continue
    # An OR expression passes when any alternative is allowed; AND needs all of its parts.
    alternatives = [a.strip(" ()") for a in re.split(r"\s+OR\s+|/", expr)]
    def ok(alt):
        return all(p.strip(" ()") in ALLOWED for p in re.split(r"\s+AND\s+", alt))
    if not any(ok(a) for a in alternatives):
        bad.append(f"{pkg['name']} {pkg['version']}: {expr}")
if bad:
    print("licences outside the allow-list:\n  " + "\n  ".join(bad), file=sys.stderr)
    sys.exit(1)
print(f"licences: {sum(1 for p in meta['packages'] if p['source'])} dependencies, all allowed")
