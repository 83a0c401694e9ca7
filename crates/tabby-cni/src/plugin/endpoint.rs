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
use crate::protocol::{CniError, Invocation, code};

/// Pod annotation naming the container whose addresses the Pod carries (Calico's).
pub const ANNOTATION_CONTAINER_ID: &str = "cni.projectcalico.org/containerID";
/// Pod annotation with the primary address as a CIDR (Calico's).
pub const ANNOTATION_POD_IP: &str = "cni.projectcalico.org/podIP";
/// Pod annotation with every address as CIDRs, comma-separated (Calico's).
pub const ANNOTATION_POD_IPS: &str = "cni.projectcalico.org/podIPs";

/// How often a write that lost a compare-and-swap against another writer of the same Pod
/// (a relabel) is tried again.
const POD_RETRIES: usize = 20;

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
    let wep = endpoint(inv, id, &call.node, addresses, mac, pod.map(|(_, p)| p));
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
        StoreError::Conflict { .. } | StoreError::NotFound { .. }
    )
}

/// Takes this container's addresses off its Pod (when the Pod carries them), as Calico does
/// when it deletes a Kubernetes-datastore endpoint. A Pod another container (or nobody)
/// recorded is left alone.
pub(super) fn clear_pod(call: &Call<'_>, inv: &Invocation, id: &Identity) -> Result<(), CniError> {
    for _ in 0..POD_RETRIES {
        let Some((entry, mut p)) = pod_entry(call, id)? else {
            return Ok(());
        };
        if p.metadata.annotations.get(ANNOTATION_CONTAINER_ID) != Some(&inv.container_id) {
            return Ok(());
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
        match call.store.commit(&[Op::Update {
            key: entry.key.clone(),
            value: s.json,
            expect: Some(entry.mod_revision),
        }]) {
            Ok(_) => return Ok(()),
            Err(e) if raced(&e) => {}
            Err(e) => return Err(store_error(&call.url, &e)),
        }
    }
    Err(CniError::new(
        code::TRY_AGAIN_LATER,
        format!(
            "Pod {}/{} kept changing while its addresses were taken off it",
            id.namespace, id.pod
        ),
    ))
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

/// Deletes the workload endpoint if it is this container's (a newer pod of the same name
/// keeps its own).
pub(super) fn delete_endpoint(
    call: &Call<'_>,
    id: &Identity,
    container_id: &str,
) -> Result<(), CniError> {
    let key = Key::new(
        Kind::WorkloadEndpoint.info().store_name,
        &id.namespace,
        &id.wep_name,
    );
    let Some(entry) = call
        .store
        .get(&key)
        .map_err(|e| store_error(&call.url, &e))?
    else {
        return Ok(());
    };
    let ours = match stored::decode(&entry.key.kind, &entry.value, entry.mod_revision) {
        Ok(Resource::WorkloadEndpoint(w)) => w
            .spec
            .container_id
            .as_deref()
            .is_none_or(|c| c == container_id),
        _ => true,
    };
    if !ours {
        return Ok(());
    }
    match call.store.delete(&key, Some(entry.mod_revision)) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.root(), StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_error(&call.url, &e)),
    }
}

/// The WorkloadEndpoint of a workload no Pod speaks for: labels, service account and named
/// ports from its Pod when the datastore has one (a second interface). A Kubernetes pod gets
/// its namespace's and service account's profiles.
fn endpoint(
    inv: &Invocation,
    id: &Identity,
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
        Vec::new()
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
