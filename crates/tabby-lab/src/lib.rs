//! `tabby-lab`: a virtual cluster on one machine, for the demo, the tests with real traffic and
//! the benchmarks. It must not be needed by production code.
//!
//! A lab is a set of network namespaces, all named `tabby-lab-<lab>.<part>` so that a lab can
//! be found (and removed) from the namespaces alone, even after a crash:
//!
//! ```text
//!   tabby-lab-demo.fabric    bridge fabric0 (172.30.0.1/24): the hosts' shared L2 segment
//!      │ veth node-1 ... node-N
//!   tabby-lab-demo.node-1    eth0 172.30.0.11/24, forwarding on; runs `tabby node run`
//!      │ veth tb<hash> (host side, Calico's plumbing)
//!   tabby-lab-demo.tb<hash>  one workload: eth0 with its /32, a small server on its ports
//! ```
//!
//! Nothing is made in the caller's own namespace: interface names only need to be unique
//! inside each lab namespace, so several labs (and tests) run side by side. The lab's state
//! (nodes, workloads, process ids, what a load wrote) is a JSON file under
//! `/run/tabby/lab/<lab>/` beside the lab's own SQLite datastore and the agents' logs;
//! `/run` is emptied on reboot, as the namespaces are.
//!
//! With `--datastore etcd` the lab runs its own 3-member etcd cluster in the fabric namespace
//! (on the bridge's address), reachable from every node; the lab's own commands open it from
//! inside the fabric.
//!
//! Agents learn where other nodes' workloads are over BGP by default (`--routing bgp`): each
//! Node gets `spec.bgp` with its fabric address and the agents peer in Calico's full iBGP mesh
//! on AS 64512, or with the first K nodes as route reflectors; a top-of-rack router
//! (`tabby-lab-<lab>.tor`, BIRD, GoBGP or FRR on AS 65000) can peer with every node over eBGP.
//! With `--routing datastore` each agent programs routes through the other nodes' fabric
//! addresses from their Node resources instead (nodes on one L2 segment).
//!
//! Workloads get their addresses from the file (`status.podIP`) or from the IPAM through the
//! CNI plugin. A dual-stack lab (`--ipv6`) also has an IPv6 fabric (`fd00:172:30::/64`), an
//! IPv6 pool and, under BGP, an IPv6 session beside every IPv4 one, as Calico's BIRD6.

mod agent_http;
mod down;
mod error;
mod fabric;
mod load;
mod names;
mod probe;
mod process;
mod routing;
mod serve;
mod state;
mod tor;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

pub use crate::down::{DownReport, down};
pub use crate::error::LabError;
pub use crate::load::{LoadOptions, LoadReport};
pub use crate::names::{netns_name, validate_lab_name};
pub use crate::probe::{ProbeProtocol, ProbeSpec, RealMatrix, sctp_supported};
pub use crate::routing::{CLUSTER_AS, Routing};
pub use crate::serve::{ServePort, serve};
pub use crate::state::{LabState, NodeState, WorkloadKind, WorkloadState};
pub use crate::tor::{OUTSIDE_V4, OUTSIDE_V6, TOR_AS, TorDaemon, TorState, gobgp_fib};

use crate::state::StateFile;

/// Where lab state lives unless `TABBY_LAB_DIR` says otherwise.
pub const DEFAULT_ROOT: &str = "/run/tabby/lab";

/// How many nodes a lab may have (their fabric addresses are .11 to .60 of a /24).
pub const MAX_NODES: usize = 50;

/// What every lab operation needs to know.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// The folder holding one folder per lab.
    pub root: PathBuf,
    /// The `tabby` binary, run as each node's agent and each workload's server.
    pub tabby_bin: PathBuf,
}

impl LabConfig {
    /// The default root (or `TABBY_LAB_DIR`) with the given binary.
    pub fn new(tabby_bin: PathBuf) -> Self {
        let root = std::env::var_os("TABBY_LAB_DIR")
            .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from);
        Self { root, tabby_bin }
    }
}

/// How to bring a lab up.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The lab's name.
    pub name: String,
    /// How many nodes.
    pub nodes: usize,
    /// The datastore URL; `None`: a SQLite file in the lab's folder; `etcd`: a 3-member etcd
    /// cluster inside the lab (on the fabric).
    pub datastore: Option<String>,
    /// Who programs routes to other nodes' workloads.
    pub routing: Routing,
    /// Under BGP, the first K nodes become route reflectors and the mesh is off (0: mesh).
    pub route_reflectors: usize,
    /// Under BGP, a top-of-rack router running this daemon, peering with every node.
    pub tor: Option<TorDaemon>,
    /// Dual stack: IPv6 fabric addresses, an IPv6 pool, pods with an address of each family
    /// and, under BGP, an IPv6 session beside each IPv4 one.
    pub ipv6: bool,
}

/// How a lab's processes are doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Per node, in order.
    pub nodes: Vec<NodeHealth>,
    /// Per workload (`namespace/name`): whether its server runs (true when it has none).
    pub servers: BTreeMap<String, bool>,
    /// The top-of-rack router, if any: how many processes (its daemons) run in it.
    pub tor_processes: Option<usize>,
}

/// How one node's agent is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    /// The node.
    pub name: String,
    /// The agent's process runs.
    pub running: bool,
    /// It answers `/readyz` with 200.
    pub ready: bool,
}

/// An existing lab, held locked so that two commands never change it at once.
#[derive(Debug)]
pub struct Lab {
    config: LabConfig,
    file: StateFile,
    state: LabState,
}

impl Lab {
    /// Brings a lab up: fabric, nodes, Node resources, agents; returns once every agent is
    /// ready. On failure everything made so far is removed again.
    pub fn up(config: &LabConfig, opts: &UpOptions) -> Result<Self, LabError> {
        fabric::up(config, opts)
    }

    /// Opens an existing lab.
    pub fn open(config: &LabConfig, name: &str) -> Result<Self, LabError> {
        validate_lab_name(name)?;
        let (file, state) = StateFile::open(&config.root, name)?;
        Ok(Self {
            config: config.clone(),
            file,
            state,
        })
    }

    /// What the lab holds.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The lab's folder (state, datastore, logs).
    pub fn dir(&self) -> PathBuf {
        self.file.dir().to_owned()
    }

    /// Opens the lab's datastore (from inside the lab when it lives there: the client's
    /// threads and sockets are made in the fabric's namespace and stay there).
    pub fn store(&self) -> Result<Box<dyn tabby_store::Datastore>, LabError> {
        fabric::open_store(&self.state)
    }

    /// Runs a command inside a node's or workload's namespace (see [`Lab::netns_of`]), with
    /// this process's standard input and output, and waits for it.
    pub fn exec(&self, target: &str, command: &[String]) -> Result<ExitStatus, LabError> {
        let path = self.netns_of(target)?;
        let Some((program, args)) = command.split_first() else {
            return Err(LabError::Input(vec!["no command given".to_owned()]));
        };
        tabby_dataplane::netns::run_in(&path, || Command::new(program).args(args).status())?
            .map_err(|error| LabError::Spawn {
                what: program.clone(),
                error,
            })
    }

    /// Kills a node's agent at once (SIGKILL, as a crash would). The kernel keeps what it
    /// programmed.
    pub fn kill_agent(&mut self, node: &str) -> Result<(), LabError> {
        let n = self.node(node)?;
        process::kill_now(n.agent_pid);
        Ok(())
    }

    /// Starts a node's agent (after [`Lab::kill_agent`]) and waits until it is ready and,
    /// under BGP, until its sessions are Established again.
    pub fn start_agent(&mut self, node: &str) -> Result<(), LabError> {
        let n = self.node(node)?.clone();
        let dir = self.dir();
        let pid = fabric::start_agent(&self.config, &self.state, &n, &dir)?;
        if let Some(slot) = self.state.nodes.iter_mut().find(|x| x.name == node) {
            slot.agent_pid = pid;
        }
        self.file.save(&self.state)?;
        agent_http::wait_ready(std::slice::from_ref(&n), std::time::Duration::from_secs(30))?;
        routing::wait_sessions(&self.state, routing::SESSIONS_UP)
    }

    fn node(&self, name: &str) -> Result<&NodeState, LabError> {
        self.state
            .nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| LabError::UnknownTarget {
                lab: self.state.name.clone(),
                what: "node",
                name: name.to_owned(),
                hint: format!(
                    "its nodes: {}",
                    self.state
                        .nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// Whether each node's agent runs and is ready, and each workload's server runs.
    pub fn health(&self) -> Health {
        let ns =
            |name: &str| process::ns_id(&Path::new(tabby_dataplane::netns::NETNS_DIR).join(name));
        Health {
            nodes: self
                .state
                .nodes
                .iter()
                .map(|n| NodeHealth {
                    name: n.name.clone(),
                    running: process::alive_in(n.agent_pid, ns(&n.netns)),
                    ready: agent_http::ready(n),
                })
                .collect(),
            servers: self
                .state
                .workloads
                .values()
                .map(|w| {
                    let up = w.ports.is_empty() || process::alive_in(w.server_pid, ns(&w.netns));
                    (w.key(), up)
                })
                .collect(),
            tor_processes: self.state.tor.as_ref().map(|t| {
                ns(&t.netns).map_or(0, |id| {
                    process::processes_in(&[id].into_iter().collect()).len()
                })
            }),
        }
    }

    /// The namespace file of a node (`node-1`), the top-of-rack router (`tor`) or a workload
    /// (`ns/pod`, or a pod name that is unique in the lab), for running commands inside it.
    pub fn netns_of(&self, target: &str) -> Result<PathBuf, LabError> {
        let netns = if let Some(n) = self.state.nodes.iter().find(|n| n.name == target) {
            &n.netns
        } else if let Some(t) = self.state.tor.as_ref().filter(|_| target == "tor") {
            &t.netns
        } else {
            &self.state.workload(target)?.netns
        };
        Ok(PathBuf::from(tabby_dataplane::netns::NETNS_DIR).join(netns))
    }
}
