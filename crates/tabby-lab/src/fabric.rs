//! `lab up`: the fabric, the nodes on it, their Node resources and their agents.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tabby_client::{Client, WriteMode};
use tabby_dataplane::netns::{self, NETNS_DIR};
use tabby_dataplane::workload::{NetnsSysctls, Sysctls as _};
use tabby_dataplane::{Netlink as _, RtNetlink};
use tabby_model::{Kind, LoadOptions, Resource};
use tabby_store::etcd::server::{ClusterSpec, EtcdCluster};

use crate::agent_http::{self, AGENT_HTTP};
use crate::names::{netns_name, netns_prefix, node_name};
use crate::routing;
use crate::state::{LabState, NodeState, StateFile};
use crate::tor::{self, TOR_AS, TOR_HOST, TorState};
use crate::{Lab, LabConfig, LabError, MAX_NODES, UpOptions, down, process, validate_lab_name};

/// The fabric's bridge, inside the fabric namespace.
const BRIDGE: &str = "fabric0";
/// The fabric's network; the bridge holds .1, node `i` holds .(10 + i).
const FABRIC: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 0);
const FABRIC_PREFIX: u8 = 24;
/// How long agents get to become ready.
const AGENT_READY: Duration = Duration::from_secs(30);

fn fabric_addr(host: u8) -> Ipv4Addr {
    let [a, b, c, _] = FABRIC.octets();
    Ipv4Addr::new(a, b, c, host)
}

/// The fabric's IPv6 network in a dual-stack lab; host `h` of the IPv4 fabric is
/// `fd00:172:30::h` (the same digits, read as hex), so the two addresses read alike.
const FABRIC_V6_PREFIX: u8 = 64;

fn fabric_addr_v6(host: u8) -> Ipv6Addr {
    let digits = u16::from_str_radix(&host.to_string(), 16).unwrap_or(0);
    Ipv6Addr::new(0xfd00, 0x172, 0x30, 0, 0, 0, 0, digits)
}

/// Calico's default pool, made when the datastore has none, so that pods without an address
/// get one.
const DEFAULT_POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: default-ipv4-ippool}
spec: {cidr: 192.168.0.0/16, blockSize: 26, natOutgoing: true, nodeSelector: all()}
";

/// The IPv6 pool of a dual-stack lab whose datastore has none (Calico's default block size;
/// Calico picks a random ULA /48, the lab a fixed one that reads like the IPv4 pool).
const DEFAULT_POOL_V6: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: default-ipv6-ippool}
spec: {cidr: 'fd00:192:168::/48', blockSize: 122, nodeSelector: all()}
";

pub(crate) fn up(config: &LabConfig, opts: &UpOptions) -> Result<Lab, LabError> {
    validate_lab_name(&opts.name)?;
    if opts.nodes == 0 || opts.nodes > MAX_NODES {
        return Err(LabError::Input(vec![format!(
            "--nodes {}: a lab has 1 to {MAX_NODES} nodes",
            opts.nodes
        )]));
    }
    routing::check(opts)?;
    let leftovers = lab_namespaces(&opts.name);
    if !leftovers.is_empty() {
        return Err(LabError::Exists {
            name: opts.name.clone(),
            found: format!("network namespaces {}", leftovers.join(", ")),
        });
    }
    let file = StateFile::create(&config.root, &opts.name)?;
    let made = build(config, opts, &file);
    match made {
        Ok(state) => Ok(Lab {
            config: config.clone(),
            file,
            state,
        }),
        Err(err) => {
            // Unlock before tearing down: `down` takes the same lock.
            drop(file);
            if let Err(cleanup) = down(config, &opts.name) {
                tracing::warn!(lab = %opts.name, error = %cleanup, "cleaning up a failed lab up");
            }
            Err(err)
        }
    }
}

/// The namespaces of lab `name` that exist now.
pub(crate) fn lab_namespaces(name: &str) -> Vec<String> {
    let prefix = netns_prefix(name);
    let mut found: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn build(config: &LabConfig, opts: &UpOptions, file: &StateFile) -> Result<LabState, LabError> {
    let dir = file.dir();
    let in_lab_etcd = opts.datastore.as_deref() == Some("etcd");
    let fabric_netns = netns_name(&opts.name, "fabric");
    let datastore = match &opts.datastore {
        // Known once the cluster runs.
        Some(_) if in_lab_etcd => String::new(),
        Some(url) => url.clone(),
        None => format!("sqlite:{}", dir.join("store.db").display()),
    };
    let mut state = LabState {
        name: opts.name.clone(),
        datastore,
        datastore_netns: in_lab_etcd.then(|| fabric_netns.clone()),
        fabric_netns,
        gateway: fabric_addr(1),
        routing: opts.routing,
        route_reflectors: opts.route_reflectors,
        tor: opts.tor.map(|daemon| TorState {
            daemon,
            netns: netns_name(&opts.name, "tor"),
            address: fabric_addr(TOR_HOST),
            address_v6: opts.ipv6.then(|| fabric_addr_v6(TOR_HOST)),
            asn: TOR_AS,
            log: dir.join("tor.log"),
        }),
        nodes: Vec::new(),
        workloads: BTreeMap::new(),
        loaded: BTreeSet::new(),
    };
    for i in 1..=opts.nodes {
        let name = node_name(i);
        let host = u8::try_from(10 + i).unwrap_or(u8::MAX);
        state.nodes.push(NodeState {
            netns: netns_name(&opts.name, &name),
            address: fabric_addr(host),
            address_v6: opts.ipv6.then(|| fabric_addr_v6(host)),
            agent_pid: 0,
            log: dir.join(format!("{name}.log")),
            name,
        });
    }
    // Saved first, so that a crash from here on leaves a lab that `down` can name.
    file.save(&state)?;
    make_namespaces(&state)?;
    if in_lab_etcd {
        state.datastore = start_etcd(&state, dir)?;
        file.save(&state)?;
    }
    write_resources(&state)?;
    if let Some(t) = &state.tor {
        tor::start(config, &state.name, t, &state.nodes, dir)?;
    }
    // All at once, as a cluster's nodes boot: an agent whose peer does not listen yet
    // retries on its connect retry timer, and colliding connections settle on one.
    for i in 0..state.nodes.len() {
        let pid = start_agent(config, &state, &state.nodes[i], dir)?;
        state.nodes[i].agent_pid = pid;
        file.save(&state)?;
    }
    agent_http::wait_ready(&state.nodes, AGENT_READY)?;
    routing::wait_sessions(&state, routing::SESSIONS_UP)?;
    tracing::info!(lab = %state.name, nodes = state.nodes.len(), routing = %state.routing, "lab up");
    Ok(state)
}

/// The lab's etcd members: client and peer ports on the fabric's gateway address.
const ETCD_PORTS: [(u16, u16); 3] = [(2379, 2380), (12379, 12380), (22379, 22380)];

/// Starts a 3-member etcd cluster in the fabric namespace (its members are found and stopped
/// by `down` with every other process of the lab); returns its URL.
fn start_etcd(state: &LabState, dir: &Path) -> Result<String, LabError> {
    let addresses: Vec<(SocketAddr, SocketAddr)> = ETCD_PORTS
        .iter()
        .map(|(client, peer)| {
            (
                SocketAddr::from((state.gateway, *client)),
                SocketAddr::from((state.gateway, *peer)),
            )
        })
        .collect();
    let spec = ClusterSpec::new(dir.join("etcd"), &addresses).with_command(|| {
        let mut cmd = Command::new("etcd");
        cmd.process_group(0);
        cmd
    });
    // Started from a thread inside the fabric: the members begin life there, and the
    // readiness checks reach their addresses.
    let cluster = netns::run_in(&ns_path(&state.fabric_netns), || EtcdCluster::start(spec))?
        .map_err(|e| LabError::NotReady {
            what: "the lab's etcd cluster".to_owned(),
            reason: e.to_string(),
        })?;
    let url = cluster.url("");
    cluster.detach();
    Ok(url)
}

/// Opens the lab's datastore, from inside the lab when it lives there.
pub(crate) fn open_store(state: &LabState) -> Result<Box<dyn tabby_store::Datastore>, LabError> {
    let url = &state.datastore;
    let opened = match &state.datastore_netns {
        None => tabby_store::open(url),
        Some(ns) => netns::run_in(&ns_path(ns), || tabby_store::open(url))?,
    };
    opened.map_err(LabError::store(url))
}

/// The nodes as Node resources (addresses on the fabric, which is how agents route to each
/// other's workloads), the BGP resources under BGP, and a default pool when the datastore has
/// none.
fn write_resources(state: &LabState) -> Result<(), LabError> {
    let client = Client::new(open_store(state)?);
    let mut text = String::new();
    for i in 0..state.nodes.len() {
        text.push_str(&routing::node_yaml(
            state,
            i,
            FABRIC_PREFIX,
            FABRIC_V6_PREFIX,
        ));
    }
    text.push_str(&routing::cluster_yaml(state));
    let pools = client.list(Kind::IpPool, None)?;
    if pools.is_empty() {
        text.push_str("---\n");
        text.push_str(DEFAULT_POOL);
    }
    let has_v6_pool = pools.iter().any(|p| match p {
        Resource::IpPool(p) => p.spec.cidr.contains(':'),
        _ => false,
    });
    if state.ipv6() && !has_v6_pool {
        text.push_str("---\n");
        text.push_str(DEFAULT_POOL_V6);
    }
    let opts = LoadOptions {
        default_namespace: "default".to_owned(),
        enforce_namespace: false,
        apply_defaults: true,
    };
    let resources: Vec<Resource> = tabby_model::load(&text, "lab", &opts)
        .map_err(|e| LabError::Input(vec![e.to_string()]))?
        .into_iter()
        .map(|l| l.resource)
        .collect();
    client.write(&resources, WriteMode::Apply, false)?;
    Ok(())
}

/// A runtime for netlink sockets (each lab step makes a few and is done).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, LabError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(LabError::io("start a runtime for", "netlink"))
}

fn ns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn make_namespaces(state: &LabState) -> Result<(), LabError> {
    netns::create(&state.fabric_netns)?;
    for node in &state.nodes {
        netns::create(&node.netns)?;
    }
    if let Some(t) = &state.tor {
        netns::create(&t.netns)?;
    }
    if state.ipv6() {
        // No duplicate address detection on the lab's fabric links (every address is unique
        // by construction): an address would otherwise be unusable for its first one or two
        // seconds. Set before any interface exists, so that every later one inherits it.
        // (Workload veths need nothing here: the plumbing turns it off on both ends.)
        let namespaces = std::iter::once(&state.fabric_netns)
            .chain(state.nodes.iter().map(|n| &n.netns))
            .chain(state.tor.iter().map(|t| &t.netns));
        for ns in namespaces {
            no_dad(ns)?;
        }
    }
    // The router is one more host on the fabric, outside the cluster.
    let hosts: Vec<(&str, &str, Ipv4Addr, Option<Ipv6Addr>)> = state
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.netns.as_str(), n.address, n.address_v6))
        .chain(
            state
                .tor
                .iter()
                .map(|t| ("tor", t.netns.as_str(), t.address, t.address_v6)),
        )
        .collect();
    let rt = runtime()?;
    rt.block_on(async {
        let fabric_path = ns_path(&state.fabric_netns);
        let fabric = RtNetlink::in_netns(&fabric_path).map_err(LabError::netlink("fabric"))?;
        fabric
            .set_up("lo")
            .await
            .map_err(LabError::netlink("fabric lo"))?;
        fabric
            .add_bridge(BRIDGE)
            .await
            .map_err(LabError::netlink("fabric bridge"))?;
        fabric
            .add_address(
                BRIDGE,
                IpNet::V4(Ipv4Net::new_assert(state.gateway, FABRIC_PREFIX)),
            )
            .await
            .map_err(LabError::netlink("fabric bridge address"))?;
        if state.ipv6() {
            fabric
                .add_address(
                    BRIDGE,
                    IpNet::V6(Ipv6Net::new_assert(fabric_addr_v6(1), FABRIC_V6_PREFIX)),
                )
                .await
                .map_err(LabError::netlink("fabric bridge IPv6 address"))?;
        }
        fabric
            .set_up(BRIDGE)
            .await
            .map_err(LabError::netlink("fabric bridge"))?;
        for &(name, netns, address, address_v6) in &hosts {
            let ctx = |what: &str| format!("{name} {what}");
            let node_path = ns_path(netns);
            let peer = format!("up-{name}");
            fabric
                .add_veth(name, &peer, Some(&node_path))
                .await
                .map_err(LabError::netlink(ctx("uplink")))?;
            fabric
                .set_master(name, BRIDGE)
                .await
                .map_err(LabError::netlink(ctx("uplink")))?;
            fabric
                .set_up(name)
                .await
                .map_err(LabError::netlink(ctx("uplink")))?;
            let host =
                RtNetlink::in_netns(&node_path).map_err(LabError::netlink(ctx("netlink")))?;
            host.rename(&peer, "eth0")
                .await
                .map_err(LabError::netlink(ctx("eth0")))?;
            host.set_up("lo")
                .await
                .map_err(LabError::netlink(ctx("lo")))?;
            host.set_up("eth0")
                .await
                .map_err(LabError::netlink(ctx("eth0")))?;
            host.add_address(
                "eth0",
                IpNet::V4(Ipv4Net::new_assert(address, FABRIC_PREFIX)),
            )
            .await
            .map_err(LabError::netlink(ctx("eth0 address")))?;
            if let Some(v6) = address_v6 {
                host.add_address("eth0", IpNet::V6(Ipv6Net::new_assert(v6, FABRIC_V6_PREFIX)))
                    .await
                    .map_err(LabError::netlink(ctx("eth0 IPv6 address")))?;
            }
        }
        Ok::<(), LabError>(())
    })?;
    for node in &state.nodes {
        let sysctls = NetnsSysctls(ns_path(&node.netns));
        for key in ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"] {
            sysctls.write(key, "1")?;
        }
        default_route(&node.netns, state.gateway)?;
    }
    if let Some(t) = &state.tor {
        // A router takes no ICMP redirects (Linux ignores them when forwarding): the lab's
        // must reach each workload by its BGP routes alone, straight to the workload's host.
        let sysctls = NetnsSysctls(ns_path(&t.netns));
        for iface in ["all", "default", "eth0"] {
            sysctls.write(&format!("net/ipv4/conf/{iface}/accept_redirects"), "0")?;
            sysctls.write(&format!("net/ipv6/conf/{iface}/accept_redirects"), "0")?;
        }
    }
    Ok(())
}

/// Turns IPv6 duplicate address detection off for the interfaces a namespace gets from now
/// on (see `make_namespaces`).
fn no_dad(netns: &str) -> Result<(), LabError> {
    let sysctls = NetnsSysctls(ns_path(netns));
    for iface in ["all", "default"] {
        sysctls.write(&format!("net/ipv6/conf/{iface}/accept_dad"), "0")?;
    }
    Ok(())
}

/// The node's default route through the fabric gateway. Written with the kernel's own
/// protocol, not tabby's: the agent reconciles tabby's routes and would remove it. Proxy ARP
/// on workload interfaces needs it too (it answers for 169.254.1.1 only when the host routes
/// that address elsewhere).
fn default_route(netns: &str, gateway: Ipv4Addr) -> Result<(), LabError> {
    let out = process::output(
        "ip route (iproute2)",
        Command::new("ip")
            .args(["-n", netns, "route", "replace", "default", "via"])
            .arg(gateway.to_string()),
    )?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::NotReady {
            what: format!("the default route of {netns}"),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

pub(crate) fn start_agent(
    config: &LabConfig,
    state: &LabState,
    node: &NodeState,
    dir: &Path,
) -> Result<u32, LabError> {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&node.log)
        .map_err(LabError::io("open", &node.log))?;
    let mut cmd = Command::new(&config.tabby_bin);
    cmd.arg("--datastore")
        .arg(&state.datastore)
        .args([
            "node",
            "run",
            "--name",
            &node.name,
            "--metrics-addr",
            AGENT_HTTP,
            "--routing",
            state.routing.as_str(),
        ])
        .arg("--lock-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let child = process::spawn_in(
        &ns_path(&node.netns),
        &format!("the agent of {}", node.name),
        cmd,
    )?;
    Ok(child.id())
}
