//! The lab as a kubelet: a pod's network is made and removed by tabby's CNI plugin, through
//! the same protocol entry a container runtime drives (`tabby_cni::protocol::dispatch`, with
//! the CNI variables and network configuration a runtime would pass), so that lab pods get
//! their addresses from the IPAM blocks affine to their node and are recorded as any pod is.
//!
//! The plugin runs in this process rather than as the `tabby` binary: the lab already holds
//! the datastore (its own etcd cluster is reachable only from inside the lab), one connection
//! serves every pod of a load, and a failure comes back as a value rather than as text. Only
//! the process boundary differs from what a runtime exercises; the podman tests cover that.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use tabby_cni::kernel::KernelPlumbing;
use tabby_cni::plugin::{Mode, TabbyPlugin};
use tabby_cni::protocol::dispatch;
use tabby_store::{Datastore, Entry, Key, Listing, Op, Revision, StoreError, Watch, WatchFilter};

use crate::LabError;
use crate::names::container_id;
use crate::state::{LabState, WorkloadState};

/// The CNI network name of lab pods (Calico's, so handles read `k8s-pod-network.<id>`).
pub(crate) const NETWORK: &str = "k8s-pod-network";

/// One datastore connection handed to every CNI call of a load.
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) Arc<dyn Datastore>);

impl Datastore for Shared {
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        self.0.get(key)
    }
    fn list(&self, kind: Option<&str>, namespace: Option<&str>) -> Result<Listing, StoreError> {
        self.0.list(kind, namespace)
    }
    fn commit(&self, ops: &[Op]) -> Result<Revision, StoreError> {
        self.0.commit(ops)
    }
    fn watch(&self, after: Revision, filter: WatchFilter) -> Result<Box<dyn Watch>, StoreError> {
        self.0.watch(after, filter)
    }
    fn compact(&self, up_to: Revision) -> Result<(), StoreError> {
        self.0.compact(up_to)
    }
    fn revision(&self) -> Result<Revision, StoreError> {
        self.0.revision()
    }
}

/// The network configuration a node's kubelet would hand the plugin; `pools` (IPv4 pool
/// names) narrows where addresses come from, none: every usable pool.
fn conf(state: &LabState, node: &str, pools: &[String]) -> String {
    let mut ipam = serde_json::json!({"type": "tabby-ipam"});
    if !pools.is_empty() {
        ipam["ipv4_pools"] = pools.into();
    }
    if state.ipv6() {
        // Dual stack, as a dual-stack cluster's network configuration asks.
        ipam["assign_ipv6"] = "true".into();
    }
    serde_json::json!({
        "cniVersion": "1.1.0",
        "name": NETWORK,
        "type": "tabby",
        "datastore": state.datastore,
        "nodename": node,
        "ipam": ipam,
    })
    .to_string()
}

/// Runs one CNI command for workload `w`; ADD returns the result's addresses.
fn call(
    state: &LabState,
    store: &Shared,
    command: &'static str,
    w: &WorkloadState,
    netns: &Path,
    pools: &[String],
) -> Result<Vec<IpAddr>, LabError> {
    let node = state
        .nodes
        .iter()
        .find(|n| n.name == w.node)
        .ok_or_else(|| LabError::Input(vec![format!("no node {}", w.node)]))?;
    let plumbing = KernelPlumbing {
        host_netns: Some(Path::new(tabby_dataplane::netns::NETNS_DIR).join(&node.netns)),
    };
    let open = |_: &str| -> Result<Box<dyn Datastore>, StoreError> { Ok(Box::new(store.clone())) };
    let plugin = TabbyPlugin {
        mode: Mode::Network,
        open_store: &open,
        default_datastore: state.datastore.clone(),
        hostname: w.node.clone(),
        plumbing: &plumbing,
    };
    let mut args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
        w.namespace, w.name
    );
    // An address the file gives (status.podIP) is requested, as `podman --ip` requests one.
    if command == "ADD" && !w.addresses.is_empty() {
        let ips: Vec<String> = w.addresses.iter().map(ToString::to_string).collect();
        args.push_str(&format!(";IP={}", ips.join(",")));
    }
    let cid = container_id(&state.name, &w.interface);
    let netns_text = netns.display().to_string();
    let env = |k: &str| -> Option<String> {
        Some(match k {
            "CNI_COMMAND" => command.to_owned(),
            "CNI_CONTAINERID" => cid.clone(),
            "CNI_NETNS" => netns_text.clone(),
            "CNI_IFNAME" => tabby_dataplane::workload::WORKLOAD_INTERFACE.to_owned(),
            "CNI_PATH" => "/nonexistent".to_owned(),
            "CNI_ARGS" => args.clone(),
            _ => return None,
        })
    };
    let out = dispatch(&env, Ok(conf(state, &w.node, pools).into_bytes()), &plugin);
    let parsed: serde_json::Value = if out.stdout.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    if !out.success {
        return Err(LabError::Cni {
            command,
            workload: w.key(),
            code: parsed["code"].as_u64().unwrap_or(999),
            msg: parsed["msg"].as_str().unwrap_or(&out.stdout).to_owned(),
        });
    }
    Ok(parsed["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.parse::<ipnet::IpNet>().ok())
        .map(|n| n.addr())
        .collect())
}

/// CNI ADD: the veth, the addresses (those the workload asks for, else from the IPAM, from
/// `pools` when named) and the Pod's record; returns the addresses.
pub(crate) fn add(
    state: &LabState,
    store: &Shared,
    w: &WorkloadState,
    netns: &Path,
    pools: &[String],
) -> Result<Vec<IpAddr>, LabError> {
    call(state, store, "ADD", w, netns, pools)
}

/// CNI DEL: the veth, the Pod's record and the addresses. Idempotent.
pub(crate) fn del(
    state: &LabState,
    store: &Shared,
    w: &WorkloadState,
    netns: &Path,
) -> Result<(), LabError> {
    call(state, store, "DEL", w, netns, &[]).map(|_| ())
}
