//! `lab load`: makes the lab hold what a file describes. Workloads the file adds are made
//! (namespace, veth into their node, server) before the datastore hears of them, so that
//! the agents find their interfaces; workloads that go are removed from the datastore first
//! and then from the kernel. Loading again updates in place: a label change is only a
//! datastore write, and a workload is remade only when its node or address changes.

mod plan;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tabby_client::{Client, ObjectRef, Outcome, WriteMode};
use tabby_dataplane::RtNetlink;
use tabby_dataplane::netns::{self, NETNS_DIR};
use tabby_dataplane::workload::{self, NetnsSysctls, Workload};
use tabby_model::{Kind, Resource};

use crate::fabric::runtime;
use crate::state::WorkloadState;
use crate::{Lab, LabError, agent_http, process};

/// How long a workload's server gets to start listening.
const SERVER_READY: Duration = Duration::from_secs(10);

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
        let client = Client::new(self.store()?);
        let stored_pools = client.list(Kind::IpPool, None)?;
        let pools = plan::pools(&resources, &stored_pools);
        let plan = plan::plan(&self.state, resources, &pools).map_err(LabError::Input)?;
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
                Some(old) if same_plumbing(old, want) => {
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
                    self.teardown(&old);
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
        let mut made = Vec::new();
        for want in fresh {
            match self.make(&want) {
                Ok(w) => made.push(w),
                Err(err) => {
                    for w in &made {
                        self.teardown(w);
                    }
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
                for w in &made {
                    self.teardown(w);
                }
                return Err(err.into());
            }
        };
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
                self.teardown(&w);
                self.state.workloads.remove(&w.key());
                report.removed.push(w.key());
            }
        }
        self.file.save(&self.state)?;

        let store = client.store();
        report.revision = store
            .revision()
            .map_err(LabError::store(&self.state.datastore))?;
        if let Some(timeout) = opts.wait {
            agent_http::wait_programmed(&self.state.nodes, report.revision, timeout)?;
        }
        Ok(report)
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

    /// A workload: its namespace, plumbed into its node, and its server.
    fn make(&self, want: &WorkloadState) -> Result<WorkloadState, LabError> {
        let path = ns_path(&want.netns);
        if path.exists() {
            // A leftover of an interrupted load: nothing in it is wanted.
            let _ = netns::delete(&want.netns);
        }
        netns::create(&want.netns)?;
        let node = self
            .state
            .nodes
            .iter()
            .find(|n| n.name == want.node)
            .ok_or_else(|| LabError::Input(vec![format!("no node {}", want.node)]))?;
        let node_path = ns_path(&node.netns);
        let plumbed = runtime().and_then(|rt| {
            rt.block_on(async {
                let host = RtNetlink::in_netns(&node_path)
                    .map_err(LabError::netlink(format!("{} netlink", node.name)))?;
                let inside = RtNetlink::in_netns(&path)
                    .map_err(LabError::netlink(format!("{} netlink", want.key())))?;
                workload::plumb(
                    &host,
                    &NetnsSysctls(node_path.clone()),
                    &inside,
                    &Workload {
                        interface: &want.interface,
                        netns: &path,
                        inside: workload::WORKLOAD_INTERFACE,
                        addresses: &want.addresses,
                        mtu: None,
                    },
                )
                .await?;
                Ok::<(), LabError>(())
            })
        });
        if let Err(err) = plumbed {
            let _ = netns::delete(&want.netns);
            return Err(err);
        }
        let mut made = want.clone();
        match self.start_server(want) {
            Ok(pid) => made.server_pid = pid,
            Err(err) => {
                self.teardown(&made);
                return Err(err);
            }
        }
        tracing::info!(workload = %made.key(), node = %made.node, addresses = ?made.addresses, "workload made");
        Ok(made)
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

    /// Removes a workload from the kernel: its processes, its veth, its namespace.
    fn teardown(&self, w: &WorkloadState) {
        let path = ns_path(&w.netns);
        if let Some(id) = process::ns_id(&path) {
            let pids = process::processes_in(&[id].into_iter().collect());
            process::stop_all(&pids);
        }
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
        if path.exists()
            && let Err(err) = netns::delete(&w.netns)
        {
            tracing::warn!(workload = %w.key(), error = %err, "removing the workload's namespace");
        }
    }
}

fn same_plumbing(old: &WorkloadState, new: &WorkloadState) -> bool {
    old.node == new.node && old.interface == new.interface && old.addresses == new.addresses
}
