#!/usr/bin/env bash
# The main job: build tabby, bring up a lab of three hosts (network namespaces on one bridge,
# each running the tabby agent), load a small application in two namespaces with a security
# tier and allow policies, probe every pair of workloads with real connections, check them
# against `tabby policy matrix`, and explain a denied connection.
#
# The lab stays up for you to explore; the script ends by saying how to remove it.
# TABBY_DEMO_RM=1 removes it at the end instead. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cargo build --release --locked -p tabby
tabby=target/release/tabby

# A lab left by an earlier run of this script.
"$tabby" lab down --name demo >/dev/null
exec "$tabby" lab demo --name demo ${TABBY_DEMO_RM:+--rm}
