//! Turning dirty inputs into ordered deltas: recompute each dirty output from the current
//! input, compare with what was emitted, and order the differences so that nothing is named
//! before it exists or removed while still named.

use std::sync::Arc;

use tabby_model::policy::PolicyType;

use super::inputs::tier_for;
use super::output::{
    Delta, EndpointOut, IpSetId, PolicyId, PolicyOut, ProfileOut, RouteOut, TierOut,
};
use super::rules::{IpSetSpec, SetNeeds, policy_rules, rules_out};
use super::{EndpointRecord, Engine};
use crate::cluster::{EndpointId, order_key, tier_cmp};

/// Deltas grouped by the position they take in the output.
#[derive(Default)]
struct Batches {
    policies: Vec<Delta>,
    profiles: Vec<Delta>,
    endpoints: Vec<Delta>,
    routes: Vec<Delta>,
    route_removals: Vec<Delta>,
    endpoint_removals: Vec<Delta>,
    profile_removals: Vec<Delta>,
    policy_removals: Vec<Delta>,
}

/// IP set references that change in this flush; every new one is taken before any old one is
/// dropped, so a set moving from one rule to another is never torn down on the way.
#[derive(Default)]
struct SetRefs {
    add: Vec<(IpSetId, IpSetSpec)>,
    drop: Vec<IpSetId>,
}

impl SetRefs {
    fn replace(&mut self, old: Option<&[IpSetId]>, new: &SetNeeds) {
        self.add.extend(new.iter().cloned());
        self.drop.extend(old.into_iter().flatten().cloned());
    }
}

impl Engine {
    pub(super) fn compute_deltas(&mut self) -> Vec<Delta> {
        let mut b = Batches::default();
        let mut refs = SetRefs::default();
        self.flush_endpoints(&mut b);
        self.flush_profiles(&mut b, &mut refs);
        self.flush_policies(&mut b, &mut refs);
        for (id, spec) in &refs.add {
            self.ipsets.add_ref(id, spec);
        }
        for id in &refs.drop {
            self.ipsets.drop_ref(id);
        }
        self.flush_routes(&mut b);
        let (created, members, removed) = self.ipsets.take_deltas();
        let mut out = created;
        out.extend(members);
        out.extend(b.policies);
        out.extend(b.profiles);
        out.extend(b.endpoints);
        out.extend(b.routes);
        out.extend(b.route_removals);
        out.extend(b.endpoint_removals);
        out.extend(b.profile_removals);
        out.extend(b.policy_removals);
        out.extend(removed);
        out
    }

    fn endpoint_out(&self, id: &EndpointId, rec: &EndpointRecord) -> EndpointOut {
        let mut policies: Vec<(&PolicyId, &crate::compile::CompiledPolicy, crate::TierInfo)> = self
            .local_policies
            .matched_by(rec.item)
            .filter_map(|pid| {
                let p = &self.policies.get(pid)?.compiled;
                Some((pid, p, tier_for(&self.tiers, &p.tier)))
            })
            .collect();
        policies.sort_by(|a, b| {
            tier_cmp(&a.2, &b.2)
                .then(order_key(a.1.order).total_cmp(&order_key(b.1.order)))
                .then_with(|| a.1.sort_name.cmp(&b.1.sort_name))
        });
        let mut tiers: Vec<TierOut> = Vec::new();
        for (pid, p, tier) in policies {
            if tiers.last().is_none_or(|t| t.name != tier.name) {
                tiers.push(TierOut {
                    name: tier.name.clone(),
                    default_action: tier.default_action,
                    ingress: Vec::new(),
                    egress: Vec::new(),
                });
            }
            let t = tiers.last_mut().expect("pushed above");
            if p.types.contains(&PolicyType::Ingress) {
                t.ingress.push(pid.clone());
            }
            if p.types.contains(&PolicyType::Egress) {
                t.egress.push(pid.clone());
            }
        }
        tiers.retain(|t| !t.ingress.is_empty() || !t.egress.is_empty());
        let mut profiles = Vec::new();
        let mut missing_profile = None;
        for name in &rec.endpoint.profiles {
            if self.resolve_profile(name).is_some() {
                profiles.push(name.clone());
            } else {
                missing_profile = Some(name.clone());
                break;
            }
        }
        let mut ips: Vec<ipnet::IpNet> = rec.endpoint.ips.iter().map(|ip| (*ip).into()).collect();
        ips.sort();
        ips.dedup();
        EndpointOut {
            id: id.clone(),
            interface: rec.endpoint.interface.clone(),
            ips,
            tiers,
            profiles,
            missing_profile,
        }
    }

    fn flush_endpoints(&mut self, b: &mut Batches) {
        let mut dirty: Vec<EndpointId> = self.dirty_endpoints.drain().collect();
        dirty.sort();
        for id in dirty {
            let new = self
                .endpoints
                .get(&id)
                .filter(|r| r.local)
                .map(|r| self.endpoint_out(&id, r));
            let old = self.emitted.endpoints.get(&id);
            if old.map(|o| &**o) == new.as_ref() {
                continue;
            }
            let old_profiles = old.map(|o| o.profiles.clone()).unwrap_or_default();
            let new_profiles = new.as_ref().map(|n| n.profiles.clone()).unwrap_or_default();
            self.count_profile_users(&old_profiles, false);
            self.count_profile_users(&new_profiles, true);
            match new {
                Some(out) => {
                    let out = Arc::new(out);
                    self.emitted.endpoints.insert(id, out.clone());
                    b.endpoints.push(Delta::EndpointUpdated(out));
                }
                None => {
                    self.emitted.endpoints.remove(&id);
                    b.endpoint_removals.push(Delta::EndpointRemoved(id));
                }
            }
        }
    }

    fn count_profile_users(&mut self, profiles: &[String], add: bool) {
        for p in profiles {
            let n = self.emitted.profile_users.entry(p.clone()).or_default();
            let crossed = if add {
                *n += 1;
                *n == 1
            } else {
                *n -= 1;
                *n == 0
            };
            if *n == 0 {
                self.emitted.profile_users.remove(p);
            }
            if crossed {
                self.dirty_profiles.insert(p.clone());
            }
        }
    }

    fn flush_profiles(&mut self, b: &mut Batches, refs: &mut SetRefs) {
        let mut dirty: Vec<String> = self.dirty_profiles.drain().collect();
        dirty.sort();
        for name in dirty {
            let used = self.emitted.profile_users.contains_key(&name);
            let mut needs = SetNeeds::new();
            let new = self
                .resolve_profile(&name)
                .filter(|_| used)
                .map(|p| ProfileOut {
                    name: name.clone(),
                    ingress: rules_out(&p.ingress, &mut needs),
                    egress: rules_out(&p.egress, &mut needs),
                });
            let old = self.emitted.profiles.get(&name);
            if old.map(|(o, _)| &**o) == new.as_ref() {
                continue;
            }
            refs.replace(old.map(|(_, s)| s.as_slice()), &needs);
            match new {
                Some(out) => {
                    let out = Arc::new(out);
                    let ids = needs.into_iter().map(|(id, _)| id).collect();
                    self.emitted.profiles.insert(name, (out.clone(), ids));
                    b.profiles.push(Delta::ProfileUpdated(out));
                }
                None => {
                    self.emitted.profiles.remove(&name);
                    b.profile_removals.push(Delta::ProfileRemoved(name));
                }
            }
        }
    }

    fn flush_policies(&mut self, b: &mut Batches, refs: &mut SetRefs) {
        let mut dirty: Vec<PolicyId> = self.dirty_policies.drain().collect();
        dirty.sort();
        for id in dirty {
            let active = self.local_policies.has_matches(&id);
            let new = match self.policies.get_mut(&id) {
                Some(rec) if active => Some(
                    rec.out
                        .get_or_insert_with(|| {
                            let mut needs = SetNeeds::new();
                            let (ingress, egress) = policy_rules(&rec.compiled, &mut needs);
                            let out = PolicyOut {
                                id: id.clone(),
                                tier: rec.compiled.tier.clone(),
                                ingress,
                                egress,
                            };
                            (Arc::new(out), needs)
                        })
                        .clone(),
                ),
                _ => None,
            };
            let old = self.emitted.policies.get(&id);
            if old.map(|(o, _)| o) == new.as_ref().map(|(o, _)| o) {
                continue;
            }
            refs.replace(
                old.map(|(_, s)| s.as_slice()),
                new.as_ref().map_or(&SetNeeds::new(), |(_, n)| n),
            );
            match new {
                Some((out, needs)) => {
                    let ids = needs.into_iter().map(|(id, _)| id).collect();
                    self.emitted.policies.insert(id, (out.clone(), ids));
                    b.policies.push(Delta::PolicyUpdated(out));
                }
                None => {
                    self.emitted.policies.remove(&id);
                    b.policy_removals.push(Delta::PolicyRemoved(id));
                }
            }
        }
    }

    fn flush_routes(&mut self, b: &mut Batches) {
        let mut dirty: Vec<ipnet::IpNet> = self.dirty_routes.drain().collect();
        dirty.sort();
        for dst in dirty {
            let new = self
                .route_claims
                .get(&dst)
                .and_then(|c| c.values().next())
                .cloned();
            if self.emitted.routes.get(&dst) == new.as_ref() {
                continue;
            }
            match new {
                Some(target) => {
                    self.emitted.routes.insert(dst, target.clone());
                    b.routes.push(Delta::RouteUpdated(RouteOut { dst, target }));
                }
                None => {
                    self.emitted.routes.remove(&dst);
                    b.route_removals.push(Delta::RouteRemoved(dst));
                }
            }
        }
    }
}
