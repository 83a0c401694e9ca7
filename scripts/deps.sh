#!/usr/bin/env bash
# Installs what building and testing tabby needs on a fresh Debian bookworm machine (as root).
# Idempotent and quick when everything is present: apt-get runs only for what is missing.
set -euo pipefail

# command -> Debian package that provides it
declare -A needs=(
  [cc]=gcc            # rusqlite builds its bundled SQLite
  [make]=make
  [python3]=python3   # scripts/check-licenses.py
  [bird]=bird2        # tabby-bgp interop tests: BIRD 2 as a real peer
  [birdc]=bird2
  [gobgpd]=gobgpd     # tabby-bgp interop tests: GoBGP (ships gobgpd and the gobgp CLI)
  [gobgp]=gobgpd
  [vtysh]=frr         # tabby-bgp interop tests: FRR's bgpd (run standalone, no zebra)
  [nft]=nftables      # tabby-dataplane writes its table with nft -f; its root tests run it
  [ip]=iproute2       # tabby-dataplane root tests (namespaces under /run/netns)
  [podman]=podman     # CNI plugin tests: podman (CNI backend) as the real runtime
  [runc]=runc         # podman's OCI runtime here (crun refuses hybrid cgroups)
  [etcd]=etcd-server  # tabby-store etcd backend tests start real members
  [etcdctl]=etcd-client
  [protoc]=protobuf-compiler  # etcd-client compiles etcd's gRPC protos at build time
  [openssl]=openssl   # tabby-store etcd TLS test makes its CA and certificates
  [iperf3]=iperf3     # the lab benchmark's throughput figures
)

missing=()
for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 && continue
  # One package can provide several commands; ask for it once.
  [[ " ${missing[*]} " == *" ${needs[$cmd]} "* ]] || missing+=("${needs[$cmd]}")
done
# The podman tests copy /bin/busybox into a container rootfs, so it must be the static build.
if ! { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }; then
  missing+=(busybox-static)
fi
# libc headers are not a command; check the file.
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
# protoc needs protobuf's own .proto files (descriptor.proto) for etcd's protos.
[ -e /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${missing[*]}; run as root (or install them) first" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
