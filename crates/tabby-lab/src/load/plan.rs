//! What a load means, decided before anything is touched: which workloads the file asks
//! for, on which node, with which addresses and ports, and the resources to write (pods
//! completed with their node and address). Every problem of the file is collected; any
//! problem means nothing changes.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use tabby_model::{Resource, node::workload_interface_name};

use crate::ServePort;
use crate::names::{container_id, netns_name};
use crate::probe::ProbeProtocol;
use crate::state::{LabState, WorkloadKind, WorkloadState};
use tabby_cni::plugin::{ANNOTATION_CONTAINER_ID, ANNOTATION_POD_IP, ANNOTATION_POD_IPS};

/// An IP pool as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pool {
    pub(crate) name: String,
    pub(crate) cidr: IpNet,
    pub(crate) disabled: bool,
}

/// The outcome of planning.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Every resource of the file, pods completed.
    pub(crate) resources: Vec<Resource>,
    /// The workloads the file describes, by `namespace/name` (process ids not yet known).
    pub(crate) workloads: BTreeMap<String, WorkloadState>,
    /// Things the user should know that do not stop the load.
    pub(crate) warnings: Vec<String>,
}

/// Pools of the file, in the file's order, then the datastore's others: a file that brings a
/// pool gets its addresses from it.
pub(crate) fn pools(file: &[Resource], stored: &[Resource]) -> Vec<Pool> {
    let mut out: Vec<Pool> = Vec::new();
    for r in file.iter().chain(stored) {
        if let Resource::IpPool(p) = r
            && let Ok(cidr) = p.spec.cidr.parse::<IpNet>()
            && !out.iter().any(|o| o.name == p.metadata.name)
        {
            out.push(Pool {
                name: p.metadata.name.clone(),
                cidr: cidr.trunc(),
                disabled: p.spec.disabled.unwrap_or(false),
            });
        }
    }
    out
}

/// The enabled IPv4 pools a file brings, by name.
pub(crate) fn file_pools(file: &[Resource]) -> Vec<String> {
    pools(file, &[])
        .into_iter()
        .filter(|p| !p.disabled && p.cidr.addr().is_ipv4())
        .map(|p| p.name)
        .collect()
}

struct Wanted {
    kind: WorkloadKind,
    namespace: String,
    name: String,
    node: Option<String>,
    interface: String,
    addresses: Vec<IpAddr>,
    ports: Vec<ServePort>,
    /// Index of the pod in `resources`, to complete it.
    pod_index: Option<usize>,
}

/// Plans loading `input` into the lab described by `state`.
pub(crate) fn plan(
    state: &LabState,
    input: Vec<Resource>,
    pools: &[Pool],
) -> Result<Plan, Vec<String>> {
    let mut errors = Vec::new();
    let mut plan = Plan::default();
    let mut wanted: Vec<Wanted> = Vec::new();
    let nodes: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
    let check_node = |object: &str, field: &str, node: &str, errors: &mut Vec<String>| {
        if !nodes.contains(&node) {
            errors.push(format!(
                "{object}: {field}: {node:?} is not a node of lab {:?} (its nodes: {})",
                state.name,
                nodes.join(", ")
            ));
        }
    };
    for r in input {
        let object = r.describe();
        match &r {
            Resource::Pod(p) if p.spec.host_network == Some(true) => {
                plan.warnings.push(format!(
                    "{object}: spec.hostNetwork is true: it shares its node's network and gets no workload of its own"
                ));
            }
            Resource::Pod(p) => {
                let namespace = r.namespace().to_owned();
                let name = p.metadata.name.clone();
                if let Some(node) = &p.spec.node_name {
                    check_node(&object, "spec.nodeName", node, &mut errors);
                }
                let mut addresses = Vec::new();
                let status_ip = p
                    .status
                    .as_ref()
                    .and_then(|s| s.get("podIP"))
                    .and_then(|v| v.as_str());
                if let Some(ip) = status_ip {
                    match ip.parse::<IpAddr>() {
                        Ok(ip) => addresses.push(ip),
                        Err(_) => errors.push(format!(
                            "{object}: status.podIP: {ip:?} is not an IP address"
                        )),
                    }
                }
                let mut ports = Vec::new();
                for (ci, c) in p.spec.containers.iter().enumerate() {
                    for (pi, port) in c.ports.iter().enumerate() {
                        let field = format!("spec.containers[{ci}].ports[{pi}]");
                        serve_port(
                            &object,
                            &field,
                            port.protocol.as_deref(),
                            port.container_port,
                            &mut ports,
                            &mut errors,
                            &mut plan.warnings,
                        );
                    }
                }
                wanted.push(Wanted {
                    kind: WorkloadKind::Pod,
                    interface: workload_interface_name(&namespace, &name),
                    namespace,
                    name,
                    node: p.spec.node_name.clone(),
                    addresses,
                    ports,
                    pod_index: Some(plan.resources.len()),
                });
            }
            Resource::WorkloadEndpoint(w) => {
                check_node(&object, "spec.node", &w.spec.node, &mut errors);
                let mut addresses = Vec::new();
                for (i, net) in w.spec.ip_networks.iter().enumerate() {
                    match net.parse::<IpNet>() {
                        Ok(n) if n.prefix_len() == n.max_prefix_len() => addresses.push(n.addr()),
                        _ => errors.push(format!(
                            "{object}: spec.ipNetworks[{i}]: {net:?} is not a single address (/32 or /128)"
                        )),
                    }
                }
                if addresses.is_empty() {
                    errors.push(format!(
                        "{object}: spec.ipNetworks: the lab needs the endpoint's address"
                    ));
                }
                if w.spec.interface_name.is_empty() {
                    errors.push(format!("{object}: spec.interfaceName: required by the lab"));
                }
                let mut ports = Vec::new();
                for (i, port) in w.spec.ports.iter().enumerate() {
                    let protocol = port.protocol.as_ref().map(ToString::to_string);
                    serve_port(
                        &object,
                        &format!("spec.ports[{i}]"),
                        protocol.as_deref(),
                        port.port,
                        &mut ports,
                        &mut errors,
                        &mut plan.warnings,
                    );
                }
                wanted.push(Wanted {
                    kind: WorkloadKind::WorkloadEndpoint,
                    namespace: r.namespace().to_owned(),
                    name: w
                        .spec
                        .pod
                        .clone()
                        .unwrap_or_else(|| w.metadata.name.clone()),
                    node: Some(w.spec.node.clone()),
                    interface: w.spec.interface_name.clone(),
                    addresses,
                    ports,
                    pod_index: None,
                });
            }
            _ => {}
        }
        plan.resources.push(r);
    }

    let mut seen = BTreeSet::new();
    let mut interfaces = BTreeMap::new();
    for w in &wanted {
        let key = format!("{}/{}", w.namespace, w.name);
        if !seen.insert(key.clone()) {
            errors.push(format!("workload {key}: described twice in the input"));
        }
        if let Some(other) = interfaces.insert((w.node.clone(), w.interface.clone()), key.clone()) {
            errors.push(format!(
                "workload {key}: interface {} is already {other}'s",
                w.interface
            ));
        }
    }

    place(state, &mut wanted);
    assign_addresses(state, pools, &mut wanted, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }

    for w in wanted {
        let node = w.node.unwrap_or_default();
        let key = format!("{}/{}", w.namespace, w.name);
        if let Some(i) = w.pod_index
            && let Some(Resource::Pod(p)) = plan.resources.get_mut(i)
        {
            p.spec.node_name = Some(node.clone());
            // A pod that stays as it is keeps the record its CNI ADD wrote on it (the file
            // does not have it); a new or remade one gets its record from its CNI ADD.
            let kept = state.workloads.get(&key).filter(|old| {
                old.node == node && old.interface == w.interface && old.addresses == w.addresses
            });
            let mut status = p
                .status
                .take()
                .and_then(|s| s.as_object().cloned())
                .unwrap_or_default();
            status.remove("podIP");
            status.remove("podIPs");
            for a in [
                ANNOTATION_CONTAINER_ID,
                ANNOTATION_POD_IP,
                ANNOTATION_POD_IPS,
            ] {
                p.metadata.annotations.remove(a);
            }
            if let Some(old) = kept {
                let cidrs: Vec<String> = old
                    .addresses
                    .iter()
                    .map(|a| IpNet::from(*a).to_string())
                    .collect();
                let a = &mut p.metadata.annotations;
                a.insert(
                    ANNOTATION_CONTAINER_ID.to_owned(),
                    container_id(&state.name, &old.interface),
                );
                a.insert(
                    ANNOTATION_POD_IP.to_owned(),
                    cidrs.first().cloned().unwrap_or_default(),
                );
                a.insert(ANNOTATION_POD_IPS.to_owned(), cidrs.join(","));
                if let Some(first) = old.addresses.first() {
                    status.insert("podIP".to_owned(), first.to_string().into());
                }
                status.insert(
                    "podIPs".to_owned(),
                    old.addresses
                        .iter()
                        .map(|a| serde_json::json!({"ip": a.to_string()}))
                        .collect::<Vec<_>>()
                        .into(),
                );
            }
            p.status = (!status.is_empty()).then(|| status.into());
        }
        let state = WorkloadState {
            kind: w.kind,
            netns: netns_name(&state.name, &w.interface),
            namespace: w.namespace,
            name: w.name,
            node,
            interface: w.interface,
            addresses: w.addresses,
            ports: w.ports,
            server_pid: 0,
        };
        plan.workloads.insert(state.key(), state);
    }
    Ok(plan)
}

fn serve_port(
    object: &str,
    field: &str,
    protocol: Option<&str>,
    port: i64,
    ports: &mut Vec<ServePort>,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let port = match u16::try_from(port) {
        Ok(p) if p != 0 => p,
        _ => {
            errors.push(format!("{object}: {field}: port {port} is not 1 to 65535"));
            return;
        }
    };
    let protocol = match protocol.map(str::to_ascii_uppercase).as_deref() {
        None | Some("TCP") | Some("6") => ProbeProtocol::Tcp,
        Some("UDP") | Some("17") => ProbeProtocol::Udp,
        Some(other) => {
            warnings.push(format!(
                "{object}: {field}: {other}/{port} is not served (the lab serves TCP and UDP)"
            ));
            return;
        }
    };
    let p = ServePort { protocol, port };
    if !ports.contains(&p) {
        ports.push(p);
        ports.sort();
    }
}

/// Nodes for workloads that name none: where they already run, else the least loaded node.
fn place(state: &LabState, wanted: &mut [Wanted]) {
    let mut load: BTreeMap<&str, usize> =
        state.nodes.iter().map(|n| (n.name.as_str(), 0)).collect();
    for w in wanted.iter_mut() {
        if w.node.is_none()
            && let Some(old) = state.workloads.get(&format!("{}/{}", w.namespace, w.name))
        {
            w.node = Some(old.node.clone());
        }
        if let Some(n) = &w.node
            && let Some(count) = load.get_mut(n.as_str())
        {
            *count += 1;
        }
    }
    for w in wanted.iter_mut().filter(|w| w.node.is_none()) {
        let least = state
            .nodes
            .iter()
            .min_by_key(|n| load.get(n.name.as_str()).copied().unwrap_or(0))
            .map(|n| n.name.clone());
        if let Some(n) = &least
            && let Some(count) = load.get_mut(n.as_str())
        {
            *count += 1;
        }
        w.node = least;
    }
}

/// Addresses: given ones must lie in a pool (the CNI ADD asks the IPAM for them); a workload
/// the lab already has on the same node keeps its address; others get theirs from the IPAM
/// at their CNI ADD, from a block affine to their node.
fn assign_addresses(
    state: &LabState,
    pools: &[Pool],
    wanted: &mut [Wanted],
    errors: &mut Vec<String>,
) {
    let mut used: BTreeSet<IpAddr> = BTreeSet::new();
    for w in wanted.iter() {
        for a in &w.addresses {
            if w.kind == WorkloadKind::Pod && !pools.iter().any(|p| p.cidr.contains(a)) {
                errors.push(format!(
                    "Pod \"{}/{}\": status.podIP: {a} is in no IP pool of the file or the lab (pools: {})",
                    w.namespace,
                    w.name,
                    pools
                        .iter()
                        .map(|p| format!("{} {}", p.name, p.cidr))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !used.insert(*a) {
                errors.push(format!(
                    "workload {}/{}: address {a} is given to another workload too",
                    w.namespace, w.name
                ));
            }
        }
    }
    for w in wanted.iter_mut().filter(|w| w.addresses.is_empty()) {
        if let Some(old) = state.workloads.get(&format!("{}/{}", w.namespace, w.name))
            && old.node.as_str() == w.node.as_deref().unwrap_or_default()
            && old.interface == w.interface
            && !old.addresses.iter().any(|a| used.contains(a))
        {
            w.addresses = old.addresses.clone();
            used.extend(old.addresses.iter().copied());
        }
    }
    let enabled = pools.iter().any(|p| !p.disabled && p.cidr.addr().is_ipv4());
    for w in wanted.iter().filter(|w| w.addresses.is_empty()) {
        if !enabled {
            errors.push(format!(
                "Pod \"{}/{}\": no enabled IPv4 pool to take an address from (add an IPPool to the file)",
                w.namespace, w.name
            ));
        }
    }
}

/// Whether a loaded workload stays as it is plumbed (same node, interface and addresses).
pub(crate) fn same_plumbing(old: &WorkloadState, new: &WorkloadState) -> bool {
    old.node == new.node && old.interface == new.interface && old.addresses == new.addresses
}
