//! ADD for the network plugin, with one datastore commit in the common case.
//!
//! The IPAM decides each address (one, or one per family in dual stack) from one reading
//! without writing it; the veth is made with those addresses; then the allocation and the workload's record (its Pod or WorkloadEndpoint,
//! and its network's profile when that is missing) are written as one commit, so the agent
//! never hears of a workload whose interface is not there yet, and nothing shows an address
//! allocated but unused in between (`tabby ipam check` has no window to misread). Only then
//! does the host route appear, so that a concurrent ADD that planned the same address and
//! lost can never take the winner's route with it. When the commit loses a race (another ADD
//! took an address or changed a block), the addresses are taken the usual way (cheap
//! compare-and-swap retries), the veth is re-addressed if it must be, and the record follows
//! in its own commit.

use std::net::IpAddr;
use std::path::Path;

use tabby_ipam::{AssignIpRequest, AssignRequest, Assigned, IpamError, Planned};
use tabby_store::{Key, Op};

use super::endpoint::{PodEntry, pod_entry, pod_speaks, record_op};
use super::{Call, Identity, TabbyPlugin, ipam_error, result, store_error};
use crate::plumbing::WorkloadPlumb;
use crate::protocol::{CniError, Invocation, NetConf, code};
use crate::result::CniResult;

/// What an ADD took and made.
struct Added {
    addresses: Vec<IpAddr>,
    mac: Option<String>,
    taken: Vec<Assigned>,
}

/// One address to take.
pub(super) enum Want {
    /// Any address of a family.
    Auto(AssignRequest),
    /// A given address.
    Ip(AssignIpRequest),
}

impl Call<'_> {
    fn plan(&self, w: &Want) -> Result<Planned, IpamError> {
        match w {
            Want::Auto(r) => self.ipam().plan_auto_assign(r),
            Want::Ip(r) => self.ipam().plan_assign_ip(r),
        }
    }

    fn take(&self, w: &Want) -> Result<Assigned, IpamError> {
        match w {
            Want::Auto(r) => self.ipam().auto_assign(r),
            Want::Ip(r) => self.ipam().assign_ip(r),
        }
    }

    /// Takes every address wanted; on failure gives back what this call took.
    pub(super) fn take_all(&self, wants: &[Want]) -> Result<Vec<Assigned>, CniError> {
        let mut taken = Vec::new();
        for w in wants {
            match self.take(w) {
                Ok(a) => taken.push(a),
                Err(e) => {
                    self.give_back(&taken);
                    return Err(ipam_error(e));
                }
            }
        }
        Ok(taken)
    }

    /// The network's profile (`<network>`), when a workload outside Kubernetes joins and the
    /// profile does not exist and no policy plugin is configured: Calico's CNI in etcd mode
    /// makes it so that such workloads reach each other and anything outside (egress: Allow;
    /// ingress: Allow from endpoints with the label `<network>`, which the profile gives its
    /// own); it never changes one that exists, so a person may edit it.
    fn profile_op(&self, id: &Identity, network: &str) -> Result<Option<Op>, CniError> {
        if id.is_k8s || self.conf.policy_type.is_some() {
            return Ok(None);
        }
        let key = Key::new(tabby_model::Kind::Profile.info().store_name, "", network);
        if self
            .store
            .get(&key)
            .map_err(|e| store_error(&self.url, &e))?
            .is_some()
        {
            return Ok(None);
        }
        let doc = serde_json::json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": network},
            "spec": {
                "egress": [{"action": "Allow"}],
                "ingress": [{"action": "Allow", "source": {"selector": format!("has({network})")}}],
                "labelsToApply": {network: ""},
            },
        });
        let loaded = tabby_model::load(
            &doc.to_string(),
            "network profile",
            &tabby_model::LoadOptions::default(),
        )
        .map_err(|e| {
            CniError::new(
                code::INVALID_NETWORK_CONFIG,
                format!("network name {network:?} cannot name its profile: {e}"),
            )
        })?;
        let Some(mut profile) = loaded.into_iter().next().map(|l| l.resource) else {
            return Ok(None);
        };
        profile.apply_defaults();
        let s = tabby_model::stored::encode(&profile);
        Ok(Some(Op::Create {
            key: Key::new(s.kind, s.namespace, s.name),
            value: s.json,
        }))
    }

    /// Everything that records the workload: its record, and its network's profile if due.
    fn record_ops(
        &self,
        inv: &Invocation,
        id: &Identity,
        network: &str,
        addresses: &[IpAddr],
        mac: Option<&str>,
        pod: Option<&PodEntry>,
    ) -> Result<Vec<Op>, CniError> {
        let mut ops = vec![record_op(self, inv, id, network, addresses, mac, pod)];
        ops.extend(self.profile_op(id, network)?);
        Ok(ops)
    }
}

impl TabbyPlugin<'_> {
    fn plumb(
        &self,
        call: &Call<'_>,
        inv: &Invocation,
        id: &Identity,
        addresses: &[IpAddr],
    ) -> Result<Option<String>, CniError> {
        self.plumbing
            .add(&WorkloadPlumb {
                host_interface: &id.host_interface,
                netns: Path::new(&inv.netns),
                ifname: &inv.ifname,
                addresses,
                mtu: call.conf.mtu,
            })
            .map_err(|e| {
                CniError::new(
                    code::PLUMBING,
                    format!("plumbing {}: {e}", id.host_interface),
                )
            })
    }

    /// ADD of the network plugin (see the module's header for the order of things).
    pub(super) fn add_network(
        &self,
        call: &Call<'_>,
        inv: &Invocation,
        conf: &NetConf,
        id: &Identity,
        pod: Option<PodEntry>,
        wants: &[Want],
    ) -> Result<CniResult, CniError> {
        let network = conf.name.as_str();
        let Added {
            addresses,
            mac,
            taken,
        } = self.add_planned(call, inv, id, network, pod, wants)?;
        let routed = self.plumbing.route(&WorkloadPlumb {
            host_interface: &id.host_interface,
            netns: Path::new(&inv.netns),
            ifname: &inv.ifname,
            addresses: &addresses,
            mtu: call.conf.mtu,
        });
        if let Err(e) = routed {
            let _ = self.plumbing.del(&id.host_interface);
            let _ = super::remove_records(call, inv, id);
            call.give_back(&taken);
            return Err(CniError::new(
                code::PLUMBING,
                format!("host route to {}: {e}", id.host_interface),
            ));
        }
        tracing::info!(workload = %id.wep_name, namespace = %id.namespace, interface = %id.host_interface, ?addresses, "workload added");
        Ok(result(inv, id, &addresses, mac, call.conf.mtu))
    }

    /// The addresses planned from one reading each, plumbed, then the allocations and the
    /// record in one commit.
    fn add_planned(
        &self,
        call: &Call<'_>,
        inv: &Invocation,
        id: &Identity,
        network: &str,
        pod: Option<PodEntry>,
        wants: &[Want],
    ) -> Result<Added, CniError> {
        let plans = wants
            .iter()
            .map(|w| call.plan(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ipam_error)?;
        let mut addresses: Vec<IpAddr> = plans.iter().map(|p| p.assigned.ip).collect();
        let mut mac = self.plumb(call, inv, id, &addresses)?;
        let committed = call
            .record_ops(inv, id, network, &addresses, mac.as_deref(), pod.as_ref())
            .and_then(|ops| call.ipam().commit_planned(&plans, &ops).map_err(ipam_error));
        match committed {
            Ok(true) => {
                return Ok(Added {
                    addresses,
                    mac,
                    taken: plans.into_iter().map(|p| p.assigned).collect(),
                });
            }
            Ok(false) => {}
            Err(e) => {
                let _ = self.plumbing.del(&id.host_interface);
                return Err(e);
            }
        }
        // Lost a race: take the addresses the usual way, then write the record.
        tracing::debug!(workload = %id.wep_name, "the one-commit ADD raced; taking the addresses again");
        let taken = match call.take_all(wants) {
            Ok(taken) => taken,
            Err(e) => {
                let _ = self.plumbing.del(&id.host_interface);
                return Err(e);
            }
        };
        let taken_addresses: Vec<IpAddr> = taken.iter().map(|a| a.ip).collect();
        if taken_addresses != addresses {
            let _ = self.plumbing.del(&id.host_interface);
            addresses = taken_addresses;
            mac = match self.plumb(call, inv, id, &addresses) {
                Ok(mac) => mac,
                Err(e) => {
                    call.give_back(&taken);
                    return Err(e);
                }
            };
        }
        // The race may have been a change to the Pod: read it again.
        let written = pod_entry(call, id).and_then(|pod| {
            self.write_record(call, inv, id, network, &addresses, mac.as_deref(), pod)
        });
        if let Err(e) = written {
            let _ = self.plumbing.del(&id.host_interface);
            call.give_back(&taken);
            return Err(e);
        }
        Ok(Added {
            addresses,
            mac,
            taken,
        })
    }

    /// Writes the workload's record on its own; a Pod that changed since it was read (a
    /// relabel) is read again.
    #[expect(
        clippy::too_many_arguments,
        reason = "the workload's parts, each needed"
    )]
    fn write_record(
        &self,
        call: &Call<'_>,
        inv: &Invocation,
        id: &Identity,
        network: &str,
        addresses: &[IpAddr],
        mac: Option<&str>,
        mut pod: Option<PodEntry>,
    ) -> Result<(), CniError> {
        for _ in 0..20 {
            let ops = call.record_ops(inv, id, network, addresses, mac, pod.as_ref())?;
            match call.store.commit(&ops) {
                Ok(_) => return Ok(()),
                Err(e) if super::endpoint::raced(&e) => {
                    if pod_speaks(inv, pod.as_ref()) {
                        pod = pod_entry(call, id)?;
                    }
                }
                Err(e) => return Err(store_error(&call.url, &e)),
            }
        }
        Err(CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "the record of {}/{} kept changing while it was written",
                id.namespace, id.wep_name
            ),
        ))
    }
}
