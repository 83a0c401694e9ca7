//! The lab's top-of-rack router: a namespace on the fabric running BIRD, GoBGP or FRR with
//! its own AS, which every node peers with over eBGP (a global BGPPeer), so that workload
//! routes reach "the rest of the data centre" and traffic from outside the cluster reaches
//! workloads. In return it advertises that outside: a network of its own ([`OUTSIDE_V4`],
//! [`OUTSIDE_V6`] in a dual-stack lab, on an interface of its own with a server on TCP/8080), so
//! routes flow both ways and workloads reach it by what their nodes learned. It must not
//! program the nodes itself: they learn only that network from it, over BGP.

mod cli;
mod fib;

use std::ffi::OsStr;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tabby_dataplane::netns::NETNS_DIR;

pub(crate) use crate::tor::cli::{next_hops, sessions};
pub use crate::tor::fib::gobgp_fib;

use crate::names::netns_name;
use crate::routing::CLUSTER_AS;
use crate::state::NodeState;
use crate::{LabConfig, LabError, process};

/// Which routing daemon runs on the top-of-rack router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TorDaemon {
    /// BIRD 2.
    Bird,
    /// GoBGP.
    Gobgp,
    /// FRR's bgpd (with zebra for the kernel).
    Frr,
}

impl TorDaemon {
    /// The `--tor` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bird => "bird",
            Self::Gobgp => "gobgp",
            Self::Frr => "frr",
        }
    }
}

impl FromStr for TorDaemon {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Self, LabError> {
        match s {
            "bird" => Ok(Self::Bird),
            "gobgp" => Ok(Self::Gobgp),
            "frr" => Ok(Self::Frr),
            other => Err(LabError::Input(vec![format!(
                "--tor {other:?}: expected bird, gobgp or frr"
            )])),
        }
    }
}

/// The top-of-rack router of a lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TorState {
    /// Its daemon.
    pub daemon: TorDaemon,
    /// Its namespace.
    pub netns: String,
    /// Its fabric address.
    pub address: Ipv4Addr,
    /// Its IPv6 fabric address, in a dual-stack lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_v6: Option<Ipv6Addr>,
    /// Its AS.
    pub asn: u32,
    /// The daemon's log.
    pub log: PathBuf,
}

impl fmt::Display for TorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} (AS {})", self.daemon, self.address, self.asn)
    }
}

/// The router's AS (a private one, outside the cluster's).
pub const TOR_AS: u32 = 65000;
/// "The rest of the data centre": the network the router advertises to the nodes (a
/// documentation prefix), with the router at `.1` serving TCP/8080.
pub const OUTSIDE_V4: &str = "203.0.113.0/24";
/// Its IPv6 counterpart in a dual-stack lab, the router at `::1`.
pub const OUTSIDE_V6: &str = "2001:db8:203::/64";
/// The interface holding the outside network on the router.
const OUTSIDE_IF: &str = "outside";
/// Its host number on the fabric (nodes are .11 to .60, the bridge .1).
pub(crate) const TOR_HOST: u8 = 254;
/// Where gobgpd's API listens, inside the router's namespace.
const GOBGP_API: &str = "127.0.0.1:50051";
/// Its port, for the `gobgp` client.
const GOBGP_PORT: &str = "50051";
/// How long the daemon gets to start.
const DAEMON_READY: Duration = Duration::from_secs(10);

/// FRR's private runtime folder for lab `lab` (`-N`): its sockets and pid files, which FRR
/// keeps under /run/frr. Removed by `lab down`.
pub(crate) fn frr_pathspace(lab: &str) -> PathBuf {
    Path::new("/run/frr").join(frr_space(lab))
}

/// The FRR pathspace's name (the last part of [`frr_pathspace`]).
fn frr_space(lab: &str) -> String {
    netns_name(lab, "tor").replace('.', "-")
}

/// Removes what a lab's router leaves outside the lab's folder and namespaces.
pub(crate) fn cleanup(lab: &str) {
    let space = frr_pathspace(lab);
    if space.exists()
        && let Err(err) = std::fs::remove_dir_all(&space)
    {
        tracing::warn!(lab, path = %space.display(), error = %err, "removing FRR's runtime folder");
    }
}

/// The BGP protocol name of a node in BIRD's configuration (`node_1`).
fn bird_name(node: &str) -> String {
    node.replace('-', "_")
}

fn bird_conf(tor: &TorState, nodes: &[NodeState]) -> String {
    let mut text = format!(
        r#"router id {me};
log stderr all;
protocol device {{ }}
# Learned workload routes go to this namespace's kernel, so traffic from here reaches them.
protocol kernel kernel4 {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}
# The outside network, advertised to the nodes (nothing else is).
protocol direct outside {{ ipv4; {v6channel} interface "{OUTSIDE_IF}"; }}
template bgp nodes {{
  local {me} as {asn};
  connect delay time 1;
  connect retry time 2;
  error wait time 1,5;
  ipv4 {{ import all; export where proto = "outside"; }};
}}
"#,
        v6channel = if tor.address_v6.is_some() {
            "ipv6;"
        } else {
            ""
        },
        me = tor.address,
        asn = tor.asn
    );
    if let Some(me6) = tor.address_v6 {
        // IPv6 routes come over sessions between IPv6 addresses, as Calico's BIRD6 runs them.
        text.push_str(&format!(
            r#"protocol kernel kernel6 {{ ipv6 {{ import none; export where source = RTS_BGP; }}; }}
template bgp nodes6 {{
  local {me6} as {asn};
  connect delay time 1;
  connect retry time 2;
  error wait time 1,5;
  ipv6 {{ import all; export where proto = "outside"; }};
}}
"#,
            asn = tor.asn
        ));
    }
    for n in nodes {
        text.push_str(&format!(
            "protocol bgp {} from nodes {{ neighbor {} as {CLUSTER_AS}; }}\n",
            bird_name(&n.name),
            n.address
        ));
        if let (Some(_), Some(a)) = (tor.address_v6, n.address_v6) {
            text.push_str(&format!(
                "protocol bgp {}_v6 from nodes6 {{ neighbor {a} as {CLUSTER_AS}; }}\n",
                bird_name(&n.name),
            ));
        }
    }
    text
}

/// Each node's neighbour addresses on the router (IPv4, and IPv6 in a dual-stack lab) with
/// the family its session carries.
fn neighbours<'a>(
    tor: &'a TorState,
    nodes: &'a [NodeState],
) -> impl Iterator<Item = (IpAddr, &'static str)> + 'a {
    nodes.iter().flat_map(move |n| {
        let v6 = n
            .address_v6
            .filter(|_| tor.address_v6.is_some())
            .map(|a| (IpAddr::V6(a), "ipv6"));
        std::iter::once((IpAddr::V4(n.address), "ipv4")).chain(v6)
    })
}

fn gobgp_conf(tor: &TorState, nodes: &[NodeState]) -> String {
    let locals = std::iter::once(tor.address.to_string())
        .chain(tor.address_v6.map(|a| a.to_string()))
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "[global.config]\n  as = {asn}\n  router-id = \"{me}\"\n  local-address-list = [{locals}]\n[global.apply-policy.config]\n  export-policy-list = [\"outside-only\"]\n  default-export-policy = \"reject-route\"\n",
        me = tor.address,
        asn = tor.asn
    );
    // Only the outside network goes to the nodes (the lab adds it to the RIB once gobgpd
    // runs: GoBGP's configuration cannot originate routes).
    let outside = outside_networks(tor);
    for (i, net) in outside.iter().enumerate() {
        text.push_str(&format!(
            "[[defined-sets.prefix-sets]]\n  prefix-set-name = \"outside{i}\"\n  [[defined-sets.prefix-sets.prefix-list]]\n    ip-prefix = \"{net}\"\n"
        ));
    }
    text.push_str("[[policy-definitions]]\n  name = \"outside-only\"\n");
    for i in 0..outside.len() {
        text.push_str(&format!(
            "  [[policy-definitions.statements]]\n    name = \"outside{i}\"\n    [policy-definitions.statements.conditions.match-prefix-set]\n      prefix-set = \"outside{i}\"\n    [policy-definitions.statements.actions]\n      route-disposition = \"accept-route\"\n"
        ));
    }
    for (a, family) in neighbours(tor, nodes) {
        text.push_str(&format!(
            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{a}\"\n    peer-as = {CLUSTER_AS}\n  [neighbors.timers.config]\n    connect-retry = 2\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{family}-unicast\"\n",
        ));
    }
    text
}

fn frr_conf(tor: &TorState, nodes: &[NodeState]) -> String {
    // bgp-peers.md: FRR >= 7.4 drops eBGP routes without a policy unless told otherwise. The
    // router tells the nodes only of the outside network.
    let mut text = format!(
        "frr defaults traditional\nhostname tor\nlog stdout informational\nip prefix-list OUTSIDE seq 5 permit {OUTSIDE_V4}\nipv6 prefix-list OUTSIDE6 seq 5 permit {OUTSIDE_V6}\nroute-map OUTSIDE-ipv4 permit 10\n match ip address prefix-list OUTSIDE\nexit\nroute-map OUTSIDE-ipv6 permit 10\n match ipv6 address prefix-list OUTSIDE6\nexit\nrouter bgp {asn}\n bgp router-id {me}\n no bgp ebgp-requires-policy\n",
        me = tor.address,
        asn = tor.asn
    );
    for (a, _) in neighbours(tor, nodes) {
        text.push_str(&format!(
            " neighbor {a} remote-as {CLUSTER_AS}\n neighbor {a} timers connect 2\n"
        ));
    }
    // Each session carries its own family (FRR activates every neighbour for IPv4 unless
    // told otherwise).
    let outside = outside_networks(tor);
    for family in ["ipv4", "ipv6"] {
        text.push_str(&format!(" address-family {family} unicast\n"));
        for net in outside
            .iter()
            .filter(|n| (family == "ipv4") == n.addr().is_ipv4())
        {
            text.push_str(&format!("  network {net}\n"));
        }
        for (a, f) in neighbours(tor, nodes) {
            if f == family {
                text.push_str(&format!(
                    "  neighbor {a} activate\n  neighbor {a} route-map OUTSIDE-{family} out\n"
                ));
            } else if family == "ipv4" {
                text.push_str(&format!("  no neighbor {a} activate\n"));
            }
        }
        text.push_str(" exit-address-family\n");
    }
    text.push_str("exit\n");
    text
}

/// The outside networks of the router: IPv4, and IPv6 in a dual-stack lab.
fn outside_networks(tor: &TorState) -> Vec<IpNet> {
    std::iter::once(OUTSIDE_V4)
        .chain(tor.address_v6.map(|_| OUTSIDE_V6))
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The router's address in each outside network, with its fabric address of that family
/// (where the nodes' routes to the outside must point).
pub(crate) fn outside_routes(tor: &TorState) -> Vec<(IpAddr, IpAddr)> {
    outside_networks(tor)
        .iter()
        .filter_map(|net| {
            let host = outside_host(net).addr();
            let via = match host {
                IpAddr::V4(_) => IpAddr::V4(tor.address),
                IpAddr::V6(_) => IpAddr::V6(tor.address_v6?),
            };
            Some((host, via))
        })
        .collect()
}

/// The router's own address in an outside network (the first host).
fn outside_host(net: &IpNet) -> IpNet {
    let host = match net.network() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) + 1)),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) + 1)),
    };
    IpNet::new(host, net.prefix_len()).unwrap_or(*net)
}

/// Makes the outside network on the router: an interface holding the router's address
/// of each outside network, and a server on TCP/8080 that greets with `outside`.
fn make_outside(config: &LabConfig, tor: &TorState) -> Result<(), LabError> {
    // A veth pair, both ends in the router (this kernel has no dummy interfaces): one end
    // holds the addresses, the other keeps the link up.
    let mut steps: Vec<Vec<String>> = vec![
        [
            "link",
            "add",
            OUTSIDE_IF,
            "type",
            "veth",
            "peer",
            "name",
            "outside-end",
        ]
        .map(String::from)
        .to_vec(),
        ["link", "set", "outside-end", "up"]
            .map(String::from)
            .to_vec(),
    ];
    for net in outside_networks(tor) {
        steps.push(vec![
            "addr".into(),
            "add".into(),
            outside_host(&net).to_string(),
            "dev".into(),
            OUTSIDE_IF.into(),
            "nodad".into(),
        ]);
    }
    steps.push(vec![
        "link".into(),
        "set".into(),
        OUTSIDE_IF.into(),
        "up".into(),
    ]);
    for args in steps {
        let out = process::output(
            "ip (iproute2)",
            Command::new("ip").args(["-n", &tor.netns]).args(&args),
        )?;
        if !out.status.success() {
            return Err(LabError::NotReady {
                what: "the router's outside network".to_owned(),
                reason: format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
    }
    spawn(
        tor,
        "the outside server",
        config.tabby_bin.as_os_str(),
        &[
            "lab",
            "serve",
            "--workload",
            "outside",
            "--port",
            "TCP/8080",
        ]
        .map(OsStr::new),
    )
}

/// GoBGP cannot originate routes from its configuration: adds the outside networks to its
/// RIB through its API, retrying while gobgpd starts.
fn gobgp_originate(tor: &TorState) -> Result<(), LabError> {
    let path = Path::new(NETNS_DIR).join(&tor.netns);
    for net in outside_networks(tor) {
        let family = if net.addr().is_ipv4() { "ipv4" } else { "ipv6" };
        let prefix = net.to_string();
        let deadline = Instant::now() + DAEMON_READY;
        loop {
            let mut cmd = Command::new("gobgp");
            cmd.args([
                "-u",
                "127.0.0.1",
                "-p",
                GOBGP_PORT,
                "global",
                "rib",
                "add",
                &prefix,
                "-a",
                family,
            ])
            .stdin(Stdio::null());
            let out =
                tabby_dataplane::netns::run_in(&path, move || cmd.output())?.map_err(|error| {
                    LabError::Spawn {
                        what: "gobgp (the GoBGP client)".to_owned(),
                        error,
                    }
                })?;
            if out.status.success() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(LabError::NotReady {
                    what: "gobgpd".to_owned(),
                    reason: format!(
                        "adding {prefix} to its RIB failed for {DAEMON_READY:?}: {}; its log: {}",
                        String::from_utf8_lossy(&out.stderr).trim(),
                        tor.log.display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Writes a file the daemon (which may drop to another user, as FRR's do) can read.
fn write_conf(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(LabError::io("write", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(LabError::io("set the mode of", path))
}

fn log_file(path: &Path) -> Result<std::fs::File, LabError> {
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(LabError::io("open", path))
}

/// Starts `program args` in the router's namespace, its output to the router's log.
fn spawn(tor: &TorState, what: &str, program: &OsStr, args: &[&OsStr]) -> Result<(), LabError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log_file(&tor.log)?)
        .stderr(log_file(&tor.log)?);
    let path = Path::new(NETNS_DIR).join(&tor.netns);
    process::spawn_in(&path, what, cmd)?;
    Ok(())
}

/// Waits for a file a starting daemon makes (a socket), or fails naming the log.
fn wait_for(tor: &TorState, what: &str, path: &Path) -> Result<(), LabError> {
    let deadline = Instant::now() + DAEMON_READY;
    while !path.exists() {
        if Instant::now() >= deadline {
            return Err(LabError::NotReady {
                what: what.to_owned(),
                reason: format!(
                    "{} did not appear within {DAEMON_READY:?}; its log: {}",
                    path.display(),
                    tor.log.display()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Starts the router's daemon (and for GoBGP, which installs no routes itself, the lab's
/// small installer of its best routes). Every process runs in the router's namespace, so
/// `lab down` finds and stops them like the agents, also after a crash.
pub(crate) fn start(
    config: &LabConfig,
    lab: &str,
    tor: &TorState,
    nodes: &[NodeState],
    dir: &Path,
) -> Result<(), LabError> {
    let dir = dir.join("tor");
    std::fs::create_dir_all(&dir).map_err(LabError::io("create", &dir))?;
    make_outside(config, tor)?;
    let os = |p: &Path| p.as_os_str().to_owned();
    match tor.daemon {
        TorDaemon::Bird => {
            let conf = dir.join("bird.conf");
            write_conf(&conf, &bird_conf(tor, nodes))?;
            let ctl = dir.join("bird.ctl");
            let pid = dir.join("bird.pid");
            spawn(
                tor,
                "BIRD",
                OsStr::new("bird"),
                &[
                    OsStr::new("-f"),
                    OsStr::new("-c"),
                    &os(&conf),
                    OsStr::new("-s"),
                    &os(&ctl),
                    OsStr::new("-P"),
                    &os(&pid),
                ],
            )?;
            wait_for(tor, "BIRD", &ctl)
        }
        TorDaemon::Gobgp => {
            let conf = dir.join("gobgpd.toml");
            write_conf(&conf, &gobgp_conf(tor, nodes))?;
            spawn(
                tor,
                "gobgpd",
                OsStr::new("gobgpd"),
                &[
                    OsStr::new("-f"),
                    &os(&conf),
                    OsStr::new("--api-hosts"),
                    OsStr::new(GOBGP_API),
                    OsStr::new("--pprof-disable"),
                ],
            )?;
            spawn(
                tor,
                "the lab's route installer for GoBGP",
                config.tabby_bin.as_os_str(),
                &[
                    OsStr::new("lab"),
                    OsStr::new("gobgp-fib"),
                    OsStr::new("--api"),
                    OsStr::new(GOBGP_API),
                ],
            )?;
            gobgp_originate(tor)
        }
        TorDaemon::Frr => {
            let space = frr_pathspace(lab);
            make_frr_pathspace(&space)?;
            let zebra_conf = dir.join("zebra.conf");
            write_conf(&zebra_conf, "hostname tor\nlog stdout informational\n")?;
            let bgpd_conf = dir.join("bgpd.conf");
            write_conf(&bgpd_conf, &frr_conf(tor, nodes))?;
            let name = frr_space(lab);
            // zebra installs bgpd's best routes in this namespace's kernel; both stay in the
            // foreground (no -d) so that they are the lab's processes.
            spawn(
                tor,
                "FRR zebra",
                OsStr::new("/usr/lib/frr/zebra"),
                &[
                    OsStr::new("-N"),
                    OsStr::new(&name),
                    OsStr::new("-f"),
                    &os(&zebra_conf),
                    OsStr::new("-i"),
                    &os(&space.join("zebra.pid")),
                ],
            )?;
            wait_for(tor, "FRR zebra", &space.join("zserv.api"))?;
            spawn(
                tor,
                "FRR bgpd",
                OsStr::new("/usr/lib/frr/bgpd"),
                &[
                    OsStr::new("-N"),
                    OsStr::new(&name),
                    OsStr::new("-f"),
                    &os(&bgpd_conf),
                    OsStr::new("-i"),
                    &os(&space.join("bgpd.pid")),
                ],
            )?;
            wait_for(tor, "FRR bgpd", &space.join("bgpd.vty"))
        }
    }
}

/// FRR's daemons drop to user frr and must be able to write their runtime folder.
fn make_frr_pathspace(space: &Path) -> Result<(), LabError> {
    if space.exists() {
        std::fs::remove_dir_all(space).map_err(LabError::io("remove", space))?;
    }
    let out = process::output(
        "install -d (FRR's runtime folder)",
        Command::new("install")
            .args(["-d", "-o", "frr", "-g", "frr"])
            .arg(space),
    )?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::NotReady {
            what: format!("FRR's runtime folder {}", space.display()),
            reason: format!(
                "{} (is the frr package installed? scripts/deps.sh installs it)",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests;
