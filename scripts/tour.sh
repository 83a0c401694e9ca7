#!/usr/bin/env bash
# A tour of the resource tools without root: build tabby, store the example resources (Calico
# manifests, a Kubernetes NetworkPolicy, pods) in a scratch datastore, list them, and show who
# can reach whom and why. (The main demo, with real hosts and traffic, is scripts/demo.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cargo build --release --locked -p tabby
tabby=target/release/tabby

demo_dir=${TABBY_DEMO_DIR:-/tmp/tabby-demo}
rm -rf "$demo_dir"   # a fresh datastore each run, so the output is always the same
export TABBY_DATASTORE="sqlite:$demo_dir/tabby.db"
echo "== datastore: $TABBY_DATASTORE"
echo
echo "== tabby apply -f examples/"
"$tabby" apply -f examples/
echo
echo "== tabby get all -A"
"$tabby" get all -A
echo
echo "== tabby get gnp deny-blocklist -o yaml"
"$tabby" get gnp deny-blocklist -o yaml
echo "== who can reach whom on TCP/8080 (tabby policy matrix)"
"$tabby" policy matrix --port 8080
echo
echo "== why the database cannot reach the backend (tabby policy explain)"
"$tabby" policy explain shop/database shop/backend --port 8080
echo
echo "== a selector, its canonical form and ID"
"$tabby" selector parse "app == 'web' && tier in {'api', 'web'}"
echo
echo "== an invalid file is refused whole, with every problem named"
bad=$(mktemp)
trap 'rm -f "$bad"' EXIT
cat > "$bad" <<'YAML'
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-db}
spec:
  selector: role == 'db'
  ingress:
    - action: Deny
      protocol: TCP
      destination: {ports: [5432, "90:80"]}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: typo}
spec: {cidr: 10.66.0.0/16, blockSzie: 26}
YAML
"$tabby" apply -f "$bad" || true
