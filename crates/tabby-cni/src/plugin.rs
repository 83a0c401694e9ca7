//! What tabby does for each CNI command: the network plugin (`type: tabby`: addresses from
//! the IPAM, the veth, the WorkloadEndpoint) and the IPAM plugin (`type: tabby-ipam`:
//! addresses only, for other network plugins).

mod add;
mod endpoint;
mod identity;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use tabby_ipam::records::{HANDLE_KIND, Handle};
use tabby_ipam::{AssignIpRequest, AssignRequest, Assigned, Ipam, IpamError};
use tabby_model::{Kind, Resource, stored};
use tabby_store::{Datastore, Key, StoreError};

use self::add::Want;
pub use self::endpoint::{ANNOTATION_CONTAINER_ID, ANNOTATION_POD_IP, ANNOTATION_POD_IPS};
use self::endpoint::{pod_entry, pod_ips, pod_speaks, remove_ops};
pub use self::identity::Identity;
use crate::config::TabbyConf;
use crate::plumbing::{Plumbing, WorkloadPlumb};
use crate::protocol::{CniError, Invocation, NetConf, Plugin, code};
use crate::result::{CniResult, Interface, IpConfig, RouteConfig};

/// Which of the two plugin types this binary is serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `tabby`: the whole workload.
    Network,
    /// `tabby-ipam`: addresses only.
    Ipam,
}

/// Opens a datastore from its URL (the binary passes `tabby_store::open`).
pub type StoreOpener<'a> = &'a dyn Fn(&str) -> Result<Box<dyn Datastore>, StoreError>;

/// The tabby CNI plugin with what it needs from its host.
pub struct TabbyPlugin<'a> {
    /// Network or IPAM.
    pub mode: Mode,
    /// Opens the datastore.
    pub open_store: StoreOpener<'a>,
    /// The datastore URL when the configuration names none (`TABBY_DATASTORE` or tabby's
    /// default).
    pub default_datastore: String,
    /// The node name when the configuration names none (the host name).
    pub hostname: String,
    /// The kernel side.
    pub plumbing: &'a dyn Plumbing,
}

impl std::fmt::Debug for TabbyPlugin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TabbyPlugin")
            .field("mode", &self.mode)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

/// Maps an IPAM failure to the CNI code a runtime acts on.
fn ipam_error(e: IpamError) -> CniError {
    let c = match &e {
        IpamError::Store(_) | IpamError::Contended { .. } => code::TRY_AGAIN_LATER,
        IpamError::NoPool { .. } | IpamError::Exhausted { .. } => code::NO_ADDRESS,
        IpamError::OutsidePools { .. }
        | IpamError::Reserved { .. }
        | IpamError::AlreadyAllocated { .. } => code::BAD_ADDRESS,
        IpamError::BadPool { .. } => code::INVALID_NETWORK_CONFIG,
        IpamError::BadSequence { .. } | IpamError::Corrupt { .. } => code::INTERNAL,
    };
    CniError::new(c, e.to_string())
}

fn store_error(url: &str, e: &StoreError) -> CniError {
    CniError::new(
        code::TRY_AGAIN_LATER,
        format!("datastore {url} is not usable: {e}"),
    )
}

/// Everything one command works with.
struct Call<'p> {
    conf: TabbyConf,
    store: Box<dyn Datastore>,
    url: String,
    node: String,
    plumbing: &'p dyn Plumbing,
}

impl TabbyPlugin<'_> {
    fn open(&self, conf: &NetConf) -> Result<Call<'_>, CniError> {
        let tconf = TabbyConf::parse(conf)?;
        if self.mode == Mode::Network && tconf.ipam.plugin_type != "tabby-ipam" {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                format!(
                    "unsupported field ipam.type = {:?}: the tabby network plugin works with \"tabby-ipam\"",
                    tconf.ipam.plugin_type
                ),
            ));
        }
        let url = tconf
            .datastore
            .clone()
            .unwrap_or_else(|| self.default_datastore.clone());
        let store = (self.open_store)(&url).map_err(|e| store_error(&url, &e))?;
        let node = tconf
            .nodename
            .clone()
            .unwrap_or_else(|| self.hostname.clone());
        Ok(Call {
            conf: tconf,
            store,
            url,
            node,
            plumbing: self.plumbing,
        })
    }
}

impl Call<'_> {
    fn ipam(&self) -> Ipam<'_> {
        Ipam::new(self.store.as_ref())
    }

    /// Reads a stored resource of `kind`, if present and decodable.
    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<Resource>, CniError> {
        let key = Key::new(kind.info().store_name, namespace, name);
        let entry = self
            .store
            .get(&key)
            .map_err(|e| store_error(&self.url, &e))?;
        Ok(entry.and_then(|e| stored::decode(&e.key.kind, &e.value, e.mod_revision).ok()))
    }

    /// The addresses to take: the ones asked for (`IP` in `CNI_ARGS`, or the `ips` runtime
    /// capability), else one per enabled family.
    fn wants(
        &self,
        inv: &Invocation,
        conf: &NetConf,
        id: &Identity,
        namespace_labels: Option<BTreeMap<String, String>>,
    ) -> Result<Vec<Want>, CniError> {
        let requested = requested_ips(inv, conf)?;
        let mut attrs = BTreeMap::from([
            ("node".to_owned(), self.node.clone()),
            ("containerID".to_owned(), inv.container_id.clone()),
        ]);
        if id.is_k8s {
            attrs.insert("namespace".to_owned(), id.namespace.clone());
            attrs.insert("pod".to_owned(), id.pod.clone());
        }
        attrs.insert(
            "workloadEndpoint".to_owned(),
            format!("{}/{}", id.namespace, id.wep_name),
        );
        // When the allocation was made (Unix seconds), so that `ipam check` can tell an ADD
        // still in flight from a leak.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        attrs.insert(tabby_ipam::ATTR_TIMESTAMP.to_owned(), now.to_string());
        if !requested.is_empty() {
            return Ok(requested
                .into_iter()
                .map(|ip| {
                    Want::Ip(AssignIpRequest {
                        ip: Some(ip),
                        handle: id.handle.clone(),
                        node: self.node.clone(),
                        attrs: attrs.clone(),
                    })
                })
                .collect());
        }
        let families = [
            (4u8, self.conf.ipam.assign_ipv4, &self.conf.ipam.ipv4_pools),
            (6u8, self.conf.ipam.assign_ipv6, &self.conf.ipam.ipv6_pools),
        ];
        Ok(families
            .into_iter()
            .filter(|(_, on, _)| *on)
            .map(|(family, _, pools)| {
                Want::Auto(AssignRequest {
                    handle: id.handle.clone(),
                    node: self.node.clone(),
                    family,
                    attrs: attrs.clone(),
                    pools: pools.clone(),
                    namespace_labels: namespace_labels.clone(),
                })
            })
            .collect())
    }

    /// Releases addresses taken earlier in this call (best effort: the error being reported
    /// matters more).
    fn give_back(&self, taken: &[Assigned]) {
        for a in taken {
            if let Err(e) = self.ipam().release_ip(a.ip, None) {
                tracing::warn!(ip = %a.ip, error = %e, "could not give back an address after a failed ADD");
            }
        }
    }
}

/// Addresses the runtime asked for: `IP=a,b` in `CNI_ARGS` (podman `--ip`), or the `ips`
/// capability in `runtimeConfig`.
fn requested_ips(inv: &Invocation, conf: &NetConf) -> Result<Vec<IpAddr>, CniError> {
    let mut out = Vec::new();
    let bad = |what: &str, v: &str| {
        CniError::new(
            code::INVALID_ENV,
            format!("{what}: {v:?} is not an IP address"),
        )
    };
    if let Some(list) = inv.args.get("IP") {
        for s in list.split(',').filter(|s| !s.is_empty()) {
            out.push(s.parse().map_err(|_| bad("CNI_ARGS IP", s))?);
        }
    }
    if let Some(ips) = conf
        .raw
        .get("runtimeConfig")
        .and_then(|r| r.get("ips"))
        .and_then(serde_json::Value::as_array)
    {
        for v in ips {
            let s = v.as_str().unwrap_or_default();
            let addr = s.split('/').next().unwrap_or_default();
            let ip: IpAddr = addr.parse().map_err(|_| bad("runtimeConfig.ips", s))?;
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    Ok(out)
}

impl Plugin for TabbyPlugin<'_> {
    fn add(&self, inv: &Invocation, conf: &NetConf) -> Result<CniResult, CniError> {
        let call = self.open(conf)?;
        let id = Identity::of(inv, &conf.name);
        if self.mode == Mode::Network && !self.plumbing.netns_exists(Path::new(&inv.netns)) {
            return Err(CniError::new(
                code::UNKNOWN_CONTAINER,
                format!("network namespace {} does not exist", inv.netns),
            ));
        }
        let pod = pod_entry(&call, &id)?;
        let namespace_labels = if id.is_k8s {
            call.get(Kind::Namespace, "", &id.namespace)?
                .map(|n| n.meta().labels.clone())
        } else {
            None
        };
        let wants = call.wants(inv, conf, &id, namespace_labels)?;
        if self.mode == Mode::Network {
            return self.add_network(&call, inv, conf, &id, pod, &wants);
        }
        let taken = call.take_all(&wants)?;
        Ok(CniResult {
            ips: taken
                .iter()
                .map(|a| IpConfig {
                    interface: None,
                    address: format!("{}/{}", a.ip, a.block.prefix_len()),
                    gateway: None,
                })
                .collect(),
            ..CniResult::default()
        })
    }

    fn del(&self, inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
        let call = self.open(conf)?;
        let id = Identity::of(inv, &conf.name);
        if self.mode == Mode::Ipam {
            let freed = call.ipam().release_handle(&id.handle).map_err(ipam_error)?;
            tracing::info!(handle = %id.handle, ?freed, "addresses released");
            return Ok(());
        }
        // The interface out of service first, so the address is unreachable before it can be
        // reused; then the record and the addresses in one commit, while the kernel finishes
        // removing the interface.
        let mut released = None;
        self.plumbing
            .del_while(&id.host_interface, &mut || {
                released = Some(release_with_records(&call, inv, &id));
            })
            .map_err(|e| CniError::new(code::PLUMBING, e))?;
        let freed = released.ok_or_else(|| {
            CniError::new(code::INTERNAL, format!("{} was not released", id.handle))
        })??;
        tracing::info!(workload = %id.wep_name, ?freed, "workload deleted");
        Ok(())
    }

    fn check(&self, inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
        let call = self.open(conf)?;
        let id = Identity::of(inv, &conf.name);
        let fail = |msg: String| CniError::new(code::INTERNAL, msg);
        let held = handle_ips(&call, &id.handle)?;
        if held.is_empty() {
            return Err(fail(format!("handle {} holds no address", id.handle)));
        }
        if let Some(prev) = conf.prev_result()? {
            for ip in prev.addresses() {
                if !held.contains(&ip) {
                    return Err(fail(format!(
                        "{ip} of prevResult is not held by {}",
                        id.handle
                    )));
                }
            }
        }
        if self.mode == Mode::Ipam {
            return Ok(());
        }
        let pod = pod_entry(&call, &id)?;
        if pod_speaks(inv, pod.as_ref())
            && let Some((_, p)) = &pod
        {
            let recorded = pod_ips(p, &inv.container_id);
            if recorded.is_empty() {
                return Err(fail(format!(
                    "Pod {}/{} does not record container {}",
                    id.namespace, id.pod, inv.container_id
                )));
            }
        } else {
            let wep = call.get(Kind::WorkloadEndpoint, &id.namespace, &id.wep_name)?;
            let Some(Resource::WorkloadEndpoint(w)) = wep else {
                return Err(fail(format!(
                    "workload endpoint {}/{} does not exist",
                    id.namespace, id.wep_name
                )));
            };
            if w.spec.container_id.as_deref() != Some(inv.container_id.as_str()) {
                return Err(fail(format!(
                    "workload endpoint {}/{} belongs to container {:?}",
                    id.namespace, id.wep_name, w.spec.container_id
                )));
            }
        }
        self.plumbing
            .check(&WorkloadPlumb {
                host_interface: &id.host_interface,
                netns: Path::new(&inv.netns),
                ifname: &inv.ifname,
                addresses: &held,
                mtu: call.conf.mtu,
            })
            .map_err(fail)
    }

    fn status(&self, _inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
        let call = self
            .open(conf)
            .map_err(|e| CniError::new(code::NOT_AVAILABLE, e.msg))?;
        let usage = call
            .ipam()
            .usage()
            .map_err(|e| CniError::new(code::NOT_AVAILABLE, e.to_string()))?;
        if !usage.pools.iter().any(|p| !p.disabled) {
            return Err(CniError::new(
                code::NOT_AVAILABLE,
                "no enabled IP pool: create one (tabby apply -f pool.yaml)",
            ));
        }
        Ok(())
    }

    fn gc(
        &self,
        _inv: &Invocation,
        conf: &NetConf,
        valid: &[(String, String)],
    ) -> Result<(), CniError> {
        let call = self.open(conf)?;
        let prefix = format!("{}.", conf.name);
        let handles = call
            .store
            .list(Some(HANDLE_KIND), None)
            .map_err(|e| store_error(&call.url, &e))?;
        let mut errors = Vec::new();
        for e in &handles.entries {
            let Some(rest) = e.key.name.strip_prefix(&prefix) else {
                continue;
            };
            let (cid, ifname) = match rest.split_once('.') {
                Some((c, i)) => (c, i),
                None => (rest, "eth0"),
            };
            if valid.iter().any(|(c, i)| c == cid && i == ifname) {
                continue;
            }
            let attachment = Invocation {
                container_id: cid.to_owned(),
                ifname: ifname.to_owned(),
                ..Invocation::default()
            };
            // The handle's allocations say which endpoint it was.
            if self.mode == Mode::Network
                && let Err(err) = gc_endpoint(&call, &attachment, &conf.name, &e.key.name)
            {
                errors.push(err.msg);
            }
            if let Err(err) = call.ipam().release_handle(&e.key.name) {
                errors.push(err.to_string());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CniError::new(code::INTERNAL, errors.join("; ")))
        }
    }
}

/// The addresses a handle holds.
fn handle_ips(call: &Call<'_>, handle: &str) -> Result<Vec<IpAddr>, CniError> {
    let key = Key::new(HANDLE_KIND, "", handle);
    let Some(e) = call
        .store
        .get(&key)
        .map_err(|e| store_error(&call.url, &e))?
    else {
        return Ok(Vec::new());
    };
    let h: Handle = serde_json::from_str(&e.value)
        .map_err(|err| CniError::new(code::INTERNAL, format!("{key}: {err}")))?;
    let mut ips = Vec::new();
    for cidr in h.blocks.keys() {
        let Ok(net) = cidr.parse::<ipnet::IpNet>() else {
            continue;
        };
        let bkey = tabby_ipam::records::block_key(net);
        if let Some(b) = call
            .store
            .get(&bkey)
            .map_err(|e| store_error(&call.url, &e))?
        {
            let block: tabby_ipam::records::Block = serde_json::from_str(&b.value)
                .map_err(|err| CniError::new(code::INTERNAL, format!("{bkey}: {err}")))?;
            ips.extend(block.ips_of(handle));
        }
    }
    Ok(ips)
}

/// Removes the record and interface of a stale attachment found by GC, named as its ADD
/// named them (the allocation's owner attributes say which pod it was).
fn gc_endpoint(
    call: &Call<'_>,
    inv: &Invocation,
    network: &str,
    handle: &str,
) -> Result<(), CniError> {
    let ips = handle_ips(call, handle)?;
    let Some(ip) = ips.first() else {
        return Ok(());
    };
    let info = call.ipam().lookup(*ip).map_err(ipam_error)?;
    let mut attachment = inv.clone();
    for (attr, arg) in [("namespace", "K8S_POD_NAMESPACE"), ("pod", "K8S_POD_NAME")] {
        if let Some(v) = info.attrs.get(attr) {
            attachment.args.insert(arg.to_owned(), v.clone());
        }
    }
    let id = Identity::of(&attachment, network);
    call.plumbing
        .del(&id.host_interface)
        .map_err(|e| CniError::new(code::PLUMBING, e))?;
    release_with_records(call, &attachment, &id).map(|_| ())
}

/// Releases the handle's addresses and takes the workload's record away, in one commit.
fn release_with_records(
    call: &Call<'_>,
    inv: &Invocation,
    id: &Identity,
) -> Result<Vec<IpAddr>, CniError> {
    call.ipam()
        .release_handle_with(&id.handle, &|| {
            remove_ops(call, id, &inv.container_id).map_err(IpamError::from)
        })
        .map_err(ipam_error)
}

/// Takes the workload's record away on its own (an ADD that failed after writing it).
fn remove_records(call: &Call<'_>, inv: &Invocation, id: &Identity) -> Result<(), CniError> {
    let ops = remove_ops(call, id, &inv.container_id).map_err(|e| store_error(&call.url, &e))?;
    call.store
        .commit(&ops)
        .map(|_| ())
        .map_err(|e| store_error(&call.url, &e))
}

/// The ADD result: host side, workload side, the /32 (/128) addresses, default routes.
fn result(
    inv: &Invocation,
    id: &Identity,
    addresses: &[IpAddr],
    mac: Option<String>,
    mtu: Option<u32>,
) -> CniResult {
    let mut routes = Vec::new();
    if addresses.iter().any(IpAddr::is_ipv4) {
        routes.push(RouteConfig::default_v4());
    }
    if addresses.iter().any(IpAddr::is_ipv6) {
        routes.push(RouteConfig::default_v6());
    }
    CniResult {
        interfaces: vec![
            Interface {
                name: id.host_interface.clone(),
                mac: Some("ee:ee:ee:ee:ee:ee".to_owned()),
                ..Interface::default()
            },
            Interface {
                name: inv.ifname.clone(),
                mac,
                mtu,
                sandbox: Some(inv.netns.clone()),
                ..Interface::default()
            },
        ],
        ips: addresses
            .iter()
            .map(|ip| IpConfig {
                interface: Some(1),
                address: ipnet::IpNet::from(*ip).to_string(),
                gateway: None,
            })
            .collect(),
        routes,
        ..CniResult::default()
    }
}

#[cfg(test)]
mod tests;
