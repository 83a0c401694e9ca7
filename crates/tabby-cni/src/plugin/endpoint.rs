//! The one record that speaks for a workload, as Calico keeps it.
//!
//! A Kubernetes pod whose Pod the datastore holds is recorded on that Pod (Calico's
//! Kubernetes-datastore way: the CNI plugin patches the Pod with its addresses and container
//! ID, and the endpoint is derived from the Pod), so that the Pod stays the only source of the
//! pod's labels, service account and ports and a relabel needs no second write. Any other
//! workload (podman, a pod the datastore does not hold, a second interface) gets a
//! WorkloadEndpoint of its own (Calico's etcd-datastore way). Never both, so no endpoint is
//! described twice.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value};
use tabby_model::k8s::PodSpec;
use tabby_model::node::{EndpointPort, WorkloadEndpointSpec};
use tabby_model::{Kind, Object, ObjectMeta, Resource, stored};
use tabby_store::{Entry, Key, Op, StoreError};

use super::{Call, Identity, store_error};
use crate::protocol::{CniError, Invocation};

/// Pod annotation naming the container whose addresses the Pod carries (Calico's).
pub const ANNOTATION_CONTAINER_ID: &str = "cni.projectcalico.org/containerID";
/// Pod annotation with the primary address as a CIDR (Calico's).
pub const ANNOTATION_POD_IP: &str = "cni.projectcalico.org/podIP";
/// Pod annotation with every address as CIDRs, comma-separated (Calico's).
pub const ANNOTATION_POD_IPS: &str = "cni.projectcalico.org/podIPs";

/// A stored Pod as read: its entry (for the revision) and its object.
pub(super) type PodEntry = (Entry, Object<PodSpec>);

/// The workload's Pod, when it is a Kubernetes pod (not on the host network) that the
/// datastore holds.
pub(super) fn pod_entry(call: &Call<'_>, id: &Identity) -> Result<Option<PodEntry>, CniError> {
    if !id.is_k8s {
        return Ok(None);
    }
    let key = Key::new(Kind::Pod.info().store_name, &id.namespace, &id.pod);
    let Some(entry) = call
        .store
        .get(&key)
        .map_err(|e| store_error(&call.url, &e))?
    else {
        return Ok(None);
    };
    match stored::decode(&entry.key.kind, &entry.value, entry.mod_revision) {
        Ok(Resource::Pod(p)) if p.spec.host_network != Some(true) => Ok(Some((entry, p))),
        _ => Ok(None),
    }
}

fn cidr(ip: IpAddr) -> String {
    ipnet::IpNet::from(ip).to_string()
}

/// Whether the Pod speaks for the workload: on the pod's primary interface only (a second
/// interface is an endpoint of its own).
pub(super) fn pod_speaks(inv: &Invocation, pod: Option<&PodEntry>) -> bool {
    pod.is_some() && inv.ifname == "eth0"
}

/// The write that records the workload: its Pod updated (compare-and-swap on the revision it
/// was read at) when the Pod speaks for it, else its WorkloadEndpoint put.
pub(super) fn record_op(
    call: &Call<'_>,
    inv: &Invocation,
    id: &Identity,
    network: &str,
    addresses: &[IpAddr],
    mac: Option<&str>,
    pod: Option<&PodEntry>,
) -> Op {
    if pod_speaks(inv, pod)
        && let Some((entry, p)) = pod
    {
        let mut p = p.clone();
        let a = &mut p.metadata.annotations;
        a.insert(ANNOTATION_CONTAINER_ID.to_owned(), inv.container_id.clone());
        if let Some(first) = addresses.first() {
            a.insert(ANNOTATION_POD_IP.to_owned(), cidr(*first));
        }
        a.insert(
            ANNOTATION_POD_IPS.to_owned(),
            addresses
                .iter()
                .map(|ip| cidr(*ip))
                .collect::<Vec<_>>()
                .join(","),
        );
        p.spec.node_name = Some(call.node.clone());
        let mut status = status_map(p.status.take());
        if let Some(first) = addresses.first() {
            status.insert("podIP".to_owned(), first.to_string().into());
        }
        status.insert(
            "podIPs".to_owned(),
            addresses
                .iter()
                .map(|ip| serde_json::json!({"ip": ip.to_string()}))
                .collect::<Vec<_>>()
                .into(),
        );
        p.status = Some(status.into());
        let s = stored::encode(&Resource::Pod(p));
        return Op::Update {
            key: entry.key.clone(),
            value: s.json,
            expect: Some(entry.mod_revision),
        };
    }
    let wep = endpoint(
        inv,
        id,
        network,
        &call.node,
        addresses,
        mac,
        pod.map(|(_, p)| p),
    );
    let s = stored::encode(&wep);
    Op::Put {
        key: Key::new(s.kind, s.namespace, s.name),
        value: s.json,
    }
}

fn status_map(status: Option<Value>) -> Map<String, Value> {
    status
        .and_then(|s| s.as_object().cloned())
        .unwrap_or_default()
}

/// Whether a store failure is a lost compare-and-swap.
pub(super) fn raced(e: &StoreError) -> bool {
    matches!(
        e.root(),
        StoreError::Conflict { .. }
            | StoreError::NotFound { .. }
            | StoreError::AlreadyExists { .. }
    )
}

/// The write that takes this container's addresses off its Pod (when the Pod carries them),
/// as Calico does when it deletes a Kubernetes-datastore endpoint. A Pod another container
/// (or nobody) recorded is left alone.
fn clear_pod_op(
    call: &Call<'_>,
    id: &Identity,
    container_id: &str,
) -> Result<Option<Op>, StoreError> {
    if !id.is_k8s {
        return Ok(None);
    }
    let key = Key::new(Kind::Pod.info().store_name, &id.namespace, &id.pod);
    let Some(entry) = call.store.get(&key)? else {
        return Ok(None);
    };
    let Ok(Resource::Pod(mut p)) =
        stored::decode(&entry.key.kind, &entry.value, entry.mod_revision)
    else {
        return Ok(None);
    };
    if p.metadata
        .annotations
        .get(ANNOTATION_CONTAINER_ID)
        .map(String::as_str)
        != Some(container_id)
    {
        return Ok(None);
    }
    for a in [
        ANNOTATION_CONTAINER_ID,
        ANNOTATION_POD_IP,
        ANNOTATION_POD_IPS,
    ] {
        p.metadata.annotations.remove(a);
    }
    let mut status = status_map(p.status.take());
    status.remove("podIP");
    status.remove("podIPs");
    p.status = (!status.is_empty()).then(|| status.into());
    let s = stored::encode(&Resource::Pod(p));
    Ok(Some(Op::Update {
        key: entry.key.clone(),
        value: s.json,
        expect: Some(entry.mod_revision),
    }))
}

/// The writes that take a workload's record away: its WorkloadEndpoint if it is this
/// container's (a newer pod of the same name keeps its own), and its Pod's addresses if the
/// Pod names this container. Read afresh on every call, for a compare-and-swap commit.
pub(super) fn remove_ops(
    call: &Call<'_>,
    id: &Identity,
    container_id: &str,
) -> Result<Vec<Op>, StoreError> {
    let mut ops = Vec::new();
    let key = Key::new(
        Kind::WorkloadEndpoint.info().store_name,
        &id.namespace,
        &id.wep_name,
    );
    if let Some(entry) = call.store.get(&key)? {
        let ours = match stored::decode(&entry.key.kind, &entry.value, entry.mod_revision) {
            Ok(Resource::WorkloadEndpoint(w)) => w
                .spec
                .container_id
                .as_deref()
                .is_none_or(|c| c == container_id),
            _ => true,
        };
        if ours {
            ops.push(Op::Delete {
                key,
                expect: Some(entry.mod_revision),
            });
        }
    }
    ops.extend(clear_pod_op(call, id, container_id)?);
    Ok(ops)
}

/// The addresses a Pod records for container `container_id` (none when it records another).
pub(super) fn pod_ips(p: &Object<PodSpec>, container_id: &str) -> Vec<IpAddr> {
    if p.metadata
        .annotations
        .get(ANNOTATION_CONTAINER_ID)
        .map(String::as_str)
        != Some(container_id)
    {
        return Vec::new();
    }
    p.metadata
        .annotations
        .get(ANNOTATION_POD_IPS)
        .map(|s| {
            s.split(',')
                .filter_map(|c| c.parse::<ipnet::IpNet>().ok())
                .map(|n| n.addr())
                .collect()
        })
        .unwrap_or_default()
}

/// The WorkloadEndpoint of a workload no Pod speaks for: labels, service account and named
/// ports from its Pod when the datastore has one (a second interface). A Kubernetes pod gets
/// its namespace's and service account's profiles; any other workload its network's profile
/// (named after the network, as Calico's CNI does outside Kubernetes).
fn endpoint(
    inv: &Invocation,
    id: &Identity,
    network: &str,
    node: &str,
    addresses: &[IpAddr],
    mac: Option<&str>,
    pod: Option<&Object<PodSpec>>,
) -> Resource {
    let mut labels = BTreeMap::new();
    let mut service_account = None;
    let mut ports = Vec::new();
    if let Some(p) = pod {
        labels.clone_from(&p.metadata.labels);
        service_account.clone_from(&p.spec.service_account_name);
        for c in &p.spec.containers {
            for port in &c.ports {
                if let Some(name) = &port.name {
                    ports.push(EndpointPort {
                        name: name.clone(),
                        protocol: port
                            .protocol
                            .clone()
                            .map(tabby_model::values::IntOrString::String),
                        port: port.container_port,
                        ..EndpointPort::default()
                    });
                }
            }
        }
    }
    let sa = service_account
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let profiles = if id.is_k8s {
        vec![
            format!("kns.{}", id.namespace),
            format!("ksa.{}.{sa}", id.namespace),
        ]
    } else {
        vec![network.to_owned()]
    };
    Resource::WorkloadEndpoint(Object {
        metadata: ObjectMeta {
            name: id.wep_name.clone(),
            namespace: Some(id.namespace.clone()),
            labels,
            ..ObjectMeta::default()
        },
        spec: WorkloadEndpointSpec {
            orchestrator: Some(if id.is_k8s { "k8s" } else { "cni" }.to_owned()),
            workload: None,
            node: node.to_owned(),
            container_id: Some(inv.container_id.clone()),
            pod: Some(id.pod.clone()),
            endpoint: Some(inv.ifname.clone()),
            service_account_name: service_account,
            ip_networks: addresses.iter().map(|ip| cidr(*ip)).collect(),
            profiles,
            interface_name: id.host_interface.clone(),
            mac: mac.map(str::to_owned),
            ports,
            ..WorkloadEndpointSpec::default()
        },
        status: None,
    })
}
