//! The lab's state file (`lab.json`) and the lock that serialises commands on one lab.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::routing::Routing;
use crate::tor::TorState;
use crate::{LabError, ServePort};

/// Everything a lab is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    /// The lab's name.
    pub name: String,
    /// The datastore URL the agents use.
    pub datastore: String,
    /// The namespace the datastore is reachable from, when it lives inside the lab (the
    /// lab's own etcd cluster on the fabric); `None`: reachable from anywhere (a file).
    #[serde(default)]
    pub datastore_netns: Option<String>,
    /// The fabric's namespace.
    pub fabric_netns: String,
    /// The fabric's gateway address (the bridge's), every node's default route.
    pub gateway: Ipv4Addr,
    /// Who programs routes to other nodes' workloads (labs from before BGP: the datastore).
    #[serde(default)]
    pub routing: Routing,
    /// Under BGP: how many of the first nodes are route reflectors (0: full mesh).
    #[serde(default)]
    pub route_reflectors: usize,
    /// The top-of-rack router, if the lab has one.
    #[serde(default)]
    pub tor: Option<TorState>,
    /// The nodes, in order.
    pub nodes: Vec<NodeState>,
    /// Workloads by `namespace/name`.
    pub workloads: BTreeMap<String, WorkloadState>,
    /// The resources `lab load` wrote (kind store name, namespace, name), for `--prune`.
    pub loaded: BTreeSet<(String, String, String)>,
}

/// One node: a namespace on the fabric running an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// Its name (`node-1`).
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Its fabric address.
    pub address: Ipv4Addr,
    /// Its IPv6 fabric address, in a dual-stack lab (`lab up --ipv6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_v6: Option<Ipv6Addr>,
    /// The agent's process id.
    pub agent_pid: u32,
    /// The agent's log.
    pub log: PathBuf,
}

/// Whether a workload came from a Pod or a WorkloadEndpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// A Kubernetes Pod.
    Pod,
    /// A Calico WorkloadEndpoint.
    WorkloadEndpoint,
}

/// One workload: a namespace plumbed into a node, with a server on its ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadState {
    /// Pod or WorkloadEndpoint.
    pub kind: WorkloadKind,
    /// Its Kubernetes namespace.
    pub namespace: String,
    /// Its name (the pod's, or the endpoint's).
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// The host-side interface on that node.
    pub interface: String,
    /// Its network namespace.
    pub netns: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// The ports its server listens on.
    pub ports: Vec<ServePort>,
    /// The server's process id.
    pub server_pid: u32,
}

impl WorkloadState {
    /// `namespace/name`, as `policy matrix` names endpoints.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl LabState {
    /// Whether the lab is dual stack (its nodes have IPv6 fabric addresses).
    pub fn ipv6(&self) -> bool {
        self.nodes.iter().any(|n| n.address_v6.is_some())
    }

    /// A workload by `namespace/name`, or by a name unique in the lab.
    pub fn workload(&self, target: &str) -> Result<&WorkloadState, LabError> {
        if let Some(w) = self.workloads.get(target) {
            return Ok(w);
        }
        let by_name: Vec<&WorkloadState> = self
            .workloads
            .values()
            .filter(|w| w.name == target)
            .collect();
        if let [one] = by_name[..] {
            return Ok(one);
        }
        let hint = if by_name.is_empty() {
            let mut known: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
            known.extend(self.workloads.keys().cloned());
            format!("known: {}", known.join(", "))
        } else {
            format!(
                "several workloads have that name: {}",
                by_name
                    .iter()
                    .map(|w| w.key())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Err(LabError::UnknownTarget {
            lab: self.name.clone(),
            what: "node or workload",
            name: target.to_owned(),
            hint,
        })
    }
}

/// The lab's folder, held under an exclusive lock for as long as this value lives.
#[derive(Debug)]
pub(crate) struct StateFile {
    dir: PathBuf,
    _lock: File,
}

const STATE: &str = "lab.json";
const LOCK: &str = "lock";

impl StateFile {
    /// Makes the lab's folder (which must not exist) and locks it.
    pub(crate) fn create(root: &Path, name: &str) -> Result<Self, LabError> {
        std::fs::create_dir_all(root).map_err(LabError::io("create", root))?;
        let dir = root.join(name);
        std::fs::create_dir(&dir).map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                LabError::Exists {
                    name: name.to_owned(),
                    found: format!("its folder {}", dir.display()),
                }
            } else {
                LabError::io("create", &dir)(error)
            }
        })?;
        let lock = Self::lock(&dir)?;
        Ok(Self { dir, _lock: lock })
    }

    /// Locks an existing lab and reads its state.
    pub(crate) fn open(root: &Path, name: &str) -> Result<(Self, LabState), LabError> {
        let dir = root.join(name);
        if !dir.join(STATE).exists() {
            return Err(LabError::NotFound {
                name: name.to_owned(),
            });
        }
        let lock = Self::lock(&dir)?;
        let path = dir.join(STATE);
        let text = std::fs::read_to_string(&path).map_err(LabError::io("read", &path))?;
        let state = serde_json::from_str(&text).map_err(|e| LabError::State {
            lab: name.to_owned(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok((Self { dir, _lock: lock }, state))
    }

    /// Locks a lab's folder if it exists (for `lab down`, which must work on any leftover).
    pub(crate) fn lock_existing(root: &Path, name: &str) -> Result<Option<Self>, LabError> {
        let dir = root.join(name);
        if !dir.is_dir() {
            return Ok(None);
        }
        let lock = Self::lock(&dir)?;
        Ok(Some(Self { dir, _lock: lock }))
    }

    fn lock(dir: &Path) -> Result<File, LabError> {
        let path = dir.join(LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(LabError::io("open", &path))?;
        // Waits while another command works on this lab.
        file.lock().map_err(LabError::io("lock", &path))?;
        Ok(file)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the state (a new file renamed over the old, so a crash leaves one or the other).
    pub(crate) fn save(&self, state: &LabState) -> Result<(), LabError> {
        let path = self.dir.join(STATE);
        let tmp = self.dir.join(format!("{STATE}.tmp"));
        let text = serde_json::to_string_pretty(state).map_err(|e| LabError::State {
            lab: state.name.clone(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(LabError::io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(LabError::io("replace", &path))
    }
}
