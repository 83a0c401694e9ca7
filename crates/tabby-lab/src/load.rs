//! `lab load`: makes the lab hold what a file describes. Pods are made as a kubelet makes
//! them: the Pod is written, then tabby's CNI plugin (ADD) gives it a namespace's veth into
//! its node and addresses from the IPAM, and records them on the Pod (see [`cni`]).
//! WorkloadEndpoints of the file are plumbed as given before the datastore hears of them, and
//! their addresses inside a pool are held in the IPAM under a lab handle.
//! Workloads that go are removed from the datastore first and then from the kernel (CNI DEL
//! for pods, which also releases their addresses). Loading again updates in place: a label
//! change is only a datastore write, and a workload is remade only when its node or address
//! changes. Every problem of the file is found before anything changes.

mod cni;
mod plan;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tabby_client::{Client, ObjectRef, Outcome, WriteMode};
use tabby_dataplane::RtNetlink;
use tabby_dataplane::netns::{self, NETNS_DIR};
use tabby_dataplane::workload::{self, NetnsSysctls, Workload};
use tabby_ipam::{AssignIpRequest, Ipam};
use tabby_model::{Kind, Resource};

use self::cni::Shared;
use crate::fabric::runtime;
use crate::names::container_id;
use crate::state::{WorkloadKind, WorkloadState};
use crate::{Lab, LabError, agent_http, process};

/// How long a workload's server gets to start listening. Generous: a loaded 2-core CI machine
/// running several labs at once has taken more than 10 s to start one (seen once).
const SERVER_READY: Duration = Duration::from_secs(30);

/// How to load a file into a lab.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Remove what earlier loads wrote and this file no longer has.
    pub prune: bool,
    /// Wait (at most this long) until every agent has programmed the result.
    pub wait: Option<Duration>,
}

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// The datastore writes, one per resource of the file.
    pub outcomes: Vec<Outcome>,
    /// Resources removed by `--prune`.
    pub pruned: Vec<String>,
    /// Workloads made.
    pub created: Vec<String>,
    /// Workloads remade (new node or address) or whose server changed ports.
    pub changed: Vec<String>,
    /// Workloads removed.
    pub removed: Vec<String>,
    /// Notes that did not stop the load.
    pub warnings: Vec<String>,
    /// The datastore revision after the load.
    pub revision: i64,
}

/// The IPAM handle under which the lab holds the addresses of a WorkloadEndpoint given whole
/// in a file (no dots: CNI GC reads a dot as its interface separator).
fn endpoint_handle(lab: &str, interface: &str) -> String {
    format!("lab-endpoint-{lab}-{interface}")
}

fn ns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn store_key(r: &Resource) -> (String, String, String) {
    (
        r.kind().info().store_name.to_owned(),
        r.namespace().to_owned(),
        r.name().to_owned(),
    )
}

impl Lab {
    /// Loads resources (already parsed and checked) into the lab.
    pub fn load(
        &mut self,
        resources: Vec<Resource>,
        opts: LoadOptions,
    ) -> Result<LoadReport, LabError> {
        let store = Shared(Arc::from(self.store()?));
        let client = Client::new(Box::new(store.clone()));
        let stored_pools = client.list(Kind::IpPool, None)?;
        let pools = plan::pools(&resources, &stored_pools);
        // A file that brings IPv4 pools gets its pods' addresses from them (as a kubelet's
        // network configuration names `ipv4_pools`); otherwise from every usable pool.
        let file_pools = plan::file_pools(&resources);
        let plan = plan::plan(&self.state, resources, &pools).map_err(LabError::Input)?;
        self.check_requested(&store, &plan)?;
        let mut report = LoadReport {
            warnings: plan.warnings,
            ..LoadReport::default()
        };

        let keys: BTreeSet<_> = plan.resources.iter().map(store_key).collect();
        let gone_keys: Vec<(String, String, String)> = if opts.prune {
            self.state.loaded.difference(&keys).cloned().collect()
        } else {
            Vec::new()
        };
        let gone: Vec<ObjectRef> = gone_keys
            .iter()
            .filter_map(|(store, ns, name)| {
                let kind = Kind::ALL.iter().find(|k| k.info().store_name == store)?;
                Some(ObjectRef::new(*kind, ns, name))
            })
            .collect();

        // Workloads to remake (their node or address changed) go first: the new one reuses
        // the interface and namespace names.
        let mut fresh = Vec::new();
        for (key, want) in &plan.workloads {
            match self.state.workloads.get(key) {
                Some(old) if plan::same_plumbing(old, want) => {
                    let server_ok = old.ports.is_empty()
                        || process::alive_in(old.server_pid, process::ns_id(&ns_path(&old.netns)));
                    if old.ports != want.ports || !server_ok {
                        process::stop_pid(old.server_pid);
                        let pid = self.start_server(want)?;
                        if let Some(w) = self.state.workloads.get_mut(key) {
                            w.ports.clone_from(&want.ports);
                            w.server_pid = pid;
                        }
                        report.changed.push(key.clone());
                    }
                }
                Some(old) => {
                    let old = old.clone();
                    self.teardown(&store, &old);
                    self.state.workloads.remove(key);
                    self.file.save(&self.state)?;
                    fresh.push(want.clone());
                    report.changed.push(key.clone());
                }
                None => {
                    fresh.push(want.clone());
                    report.created.push(key.clone());
                }
            }
        }
        // Endpoints given whole are plumbed before the datastore names their interfaces.
        let mut made = Vec::new();
        for want in fresh
            .iter()
            .filter(|w| w.kind == WorkloadKind::WorkloadEndpoint)
        {
            match self.make(&store, want, &file_pools) {
                Ok(w) => made.push(w),
                Err(err) => {
                    self.undo(&store, &made);
                    return Err(err);
                }
            }
        }

        let written = client.delete(&gone, true, false).and_then(|pruned| {
            let outcomes = client.write(&plan.resources, WriteMode::Apply, false)?;
            Ok((pruned, outcomes))
        });
        let (pruned, outcomes) = match written {
            Ok(w) => w,
            Err(err) => {
                self.undo(&store, &made);
                return Err(err.into());
            }
        };
        // Pods once their Pod exists, as a kubelet runs a pod the API server holds.
        for want in fresh.iter().filter(|w| w.kind == WorkloadKind::Pod) {
            match self.make(&store, want, &file_pools) {
                Ok(w) => made.push(w),
                Err(err) => {
                    self.undo(&store, &made);
                    return Err(err);
                }
            }
        }
        report.pruned = pruned.iter().map(|o| o.object.clone()).collect();
        report.outcomes = outcomes;
        for w in made {
            self.state.workloads.insert(w.key(), w);
        }
        for k in &gone_keys {
            self.state.loaded.remove(k);
        }
        self.state.loaded.extend(keys);

        if opts.prune {
            let removed: Vec<WorkloadState> = self
                .state
                .workloads
                .values()
                .filter(|w| !plan.workloads.contains_key(&w.key()))
                .cloned()
                .collect();
            for w in removed {
                self.teardown(&store, &w);
                self.state.workloads.remove(&w.key());
                report.removed.push(w.key());
            }
        }
        self.file.save(&self.state)?;

        report.revision = store
            .0
            .revision()
            .map_err(LabError::store(&self.state.datastore))?;
        if let Some(timeout) = opts.wait {
            agent_http::wait_programmed(&self.state.nodes, report.revision, timeout)?;
            // Under BGP the routes to other nodes' workloads come later, over the sessions.
            self.wait_routes(timeout)?;
        }
        Ok(report)
    }

    /// Addresses the file asks for that the IPAM would refuse (reserved, or held by another
    /// workload), found before anything changes.
    fn check_requested(&self, store: &Shared, plan: &plan::Plan) -> Result<(), LabError> {
        let ipam = Ipam::new(store);
        let mut errors = Vec::new();
        for w in plan.workloads.values() {
            let (ours, what) = match w.kind {
                WorkloadKind::Pod => (
                    format!(
                        "{}.{}",
                        cni::NETWORK,
                        container_id(&self.state.name, &w.interface)
                    ),
                    "Pod",
                ),
                WorkloadKind::WorkloadEndpoint => (
                    endpoint_handle(&self.state.name, &w.interface),
                    "WorkloadEndpoint",
                ),
            };
            for ip in &w.addresses {
                let info = ipam.lookup(*ip).map_err(|e| {
                    LabError::Input(vec![format!("workload {}: {ip}: {e}", w.key())])
                })?;
                if w.kind == WorkloadKind::WorkloadEndpoint {
                    if let Some(h) = info.handle.filter(|h| *h != ours) {
                        errors.push(format!(
                            "{what} for \"{}\": spec.ipNetworks: {ip} is already allocated (IPAM handle {h}); `tabby ipam show --ip {ip}` says to whom",
                            w.key()
                        ));
                    }
                    continue;
                }
                if let Some(r) = &info.reserved_by {
                    errors.push(format!(
                        "Pod \"{}\": status.podIP: {ip} is reserved by IPReservation {r:?}",
                        w.key()
                    ));
                }
                if let Some(h) = info.handle.filter(|h| *h != ours) {
                    errors.push(format!(
                        "Pod \"{}\": status.podIP: {ip} is already allocated (IPAM handle {h}); `tabby ipam show --ip {ip}` says to whom",
                        w.key()
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LabError::Input(errors))
        }
    }

    /// Removes the workloads made by a load that failed.
    fn undo(&self, store: &Shared, made: &[WorkloadState]) {
        for w in made {
            self.teardown(store, w);
        }
    }

    /// Waits until every agent has programmed the datastore's current revision.
    pub fn wait_programmed(&self, timeout: Duration) -> Result<i64, LabError> {
        let revision = self
            .store()?
            .revision()
            .map_err(LabError::store(&self.state.datastore))?;
        agent_http::wait_programmed(&self.state.nodes, revision, timeout)?;
        Ok(revision)
    }

    /// A workload: its namespace, plumbed into its node (a pod through CNI ADD, which decides
    /// its addresses), and its server.
    fn make(
        &self,
        store: &Shared,
        want: &WorkloadState,
        pools: &[String],
    ) -> Result<WorkloadState, LabError> {
        let path = ns_path(&want.netns);
        if path.exists() {
            // A leftover of an interrupted load: nothing in it is wanted.
            let _ = netns::delete(&want.netns);
        }
        netns::create(&want.netns)?;
        let mut made = want.clone();
        let plumbed = match want.kind {
            WorkloadKind::Pod => cni::add(&self.state, store, want, &path, pools)
                .map(|addresses| made.addresses = addresses),
            WorkloadKind::WorkloadEndpoint => self.plumb(want, &path).and_then(|()| {
                self.hold_addresses(store, want)
                    .inspect_err(|_| self.unplumb(want))
            }),
        };
        if let Err(err) = plumbed {
            let _ = netns::delete(&want.netns);
            return Err(err);
        }
        match self.start_server(&made) {
            Ok(pid) => made.server_pid = pid,
            Err(err) => {
                self.teardown(store, &made);
                return Err(err);
            }
        }
        tracing::info!(workload = %made.key(), node = %made.node, addresses = ?made.addresses, "workload made");
        Ok(made)
    }

    /// Allocates the addresses of a WorkloadEndpoint given whole (those inside a pool and not
    /// reserved) under the lab's handle for it, so that the IPAM never hands them to a pod
    /// and `tabby ipam check` agrees with the lab.
    fn hold_addresses(&self, store: &Shared, want: &WorkloadState) -> Result<(), LabError> {
        let ipam = Ipam::new(store);
        let handle = endpoint_handle(&self.state.name, &want.interface);
        let refused = |ip: IpAddr, e: tabby_ipam::IpamError| {
            LabError::Input(vec![format!(
                "WorkloadEndpoint for \"{}\": spec.ipNetworks: {ip}: {e}",
                want.key()
            )])
        };
        for ip in &want.addresses {
            let info = ipam.lookup(*ip).map_err(|e| refused(*ip, e))?;
            if info.pool.is_none() || info.reserved_by.is_some() {
                continue;
            }
            let held = ipam.assign_ip(&AssignIpRequest {
                ip: Some(*ip),
                handle: handle.clone(),
                node: want.node.clone(),
                attrs: [
                    ("node".to_owned(), want.node.clone()),
                    ("lab".to_owned(), self.state.name.clone()),
                ]
                .into_iter()
                .collect(),
            });
            if let Err(e) = held {
                let _ = ipam.release_handle(&handle);
                return Err(refused(*ip, e));
            }
        }
        Ok(())
    }

    /// Plumbs a WorkloadEndpoint of the file as it is given.
    fn plumb(&self, want: &WorkloadState, path: &Path) -> Result<(), LabError> {
        let node = self.node_state(&want.node)?;
        let node_path = ns_path(&node.netns);
        runtime().and_then(|rt| {
            rt.block_on(async {
                let host = RtNetlink::in_netns(&node_path)
                    .map_err(LabError::netlink(format!("{} netlink", node.name)))?;
                let inside = RtNetlink::in_netns(path)
                    .map_err(LabError::netlink(format!("{} netlink", want.key())))?;
                workload::plumb(
                    &host,
                    &NetnsSysctls(node_path.clone()),
                    &inside,
                    &NetnsSysctls(path.to_owned()),
                    &Workload {
                        interface: &want.interface,
                        netns: path,
                        inside: workload::WORKLOAD_INTERFACE,
                        addresses: &want.addresses,
                        mtu: None,
                    },
                )
                .await?;
                Ok::<(), LabError>(())
            })
        })
    }

    fn node_state(&self, name: &str) -> Result<&crate::state::NodeState, LabError> {
        self.state
            .nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| LabError::Input(vec![format!("no node {name}")]))
    }

    /// Starts the workload's server (none when it declares no port): 0 for none.
    fn start_server(&self, w: &WorkloadState) -> Result<u32, LabError> {
        if w.ports.is_empty() {
            return Ok(0);
        }
        let mut cmd = Command::new(&self.config.tabby_bin);
        cmd.args(["lab", "serve", "--workload", &w.key()]);
        for p in &w.ports {
            cmd.arg("--port").arg(p.to_string());
        }
        process::spawn_until_ready(
            &ns_path(&w.netns),
            &format!("the server of {}", w.key()),
            cmd,
            &self.dir().join(format!("{}.log", w.interface)),
            SERVER_READY,
        )
    }

    /// Removes a workload: its processes, its veth (a pod's through CNI DEL, which also
    /// takes its record off the Pod and releases its addresses), its namespace.
    fn teardown(&self, store: &Shared, w: &WorkloadState) {
        let path = ns_path(&w.netns);
        if let Some(id) = process::ns_id(&path) {
            let pids = process::processes_in(&[id].into_iter().collect());
            process::stop_all(&pids);
        }
        if w.kind == WorkloadKind::Pod {
            match cni::del(&self.state, store, w, &path) {
                Ok(()) => {}
                Err(err) => {
                    tracing::warn!(workload = %w.key(), error = %err, "CNI DEL; removing the veth directly");
                    self.unplumb(w);
                }
            }
        } else {
            self.unplumb(w);
            let handle = endpoint_handle(&self.state.name, &w.interface);
            if let Err(err) = Ipam::new(store).release_handle(&handle) {
                tracing::warn!(workload = %w.key(), error = %err, "releasing the endpoint's addresses");
            }
        }
        if path.exists()
            && let Err(err) = netns::delete(&w.netns)
        {
            tracing::warn!(workload = %w.key(), error = %err, "removing the workload's namespace");
        }
    }

    fn unplumb(&self, w: &WorkloadState) {
        if let Some(node) = self.state.nodes.iter().find(|n| n.name == w.node) {
            let node_path = ns_path(&node.netns);
            let removed = runtime().and_then(|rt| {
                rt.block_on(async {
                    let host = RtNetlink::in_netns(&node_path)
                        .map_err(LabError::netlink(format!("{} netlink", node.name)))?;
                    workload::unplumb(&host, &w.interface).await?;
                    Ok::<(), LabError>(())
                })
            });
            if let Err(err) = removed {
                tracing::warn!(workload = %w.key(), error = %err, "removing the workload's veth");
            }
        }
    }
}
