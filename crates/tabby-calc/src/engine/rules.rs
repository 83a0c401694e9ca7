//! Rules in dataplane form: every selector of a rule becomes an IP set, with the rule's
//! namespace scope and service-account match folded into the selector as Calico does (onto
//! the `projectcalico.org/namespace` label and the `pcns.`/`pcsa.` labels endpoints inherit).

use tabby_model::policy::PolicyType;
use tabby_model::selector::{Expr, Selector, unique_id};
use tabby_model::values::PortSpec;

use super::output::{EntityOut, IcmpMatch, IpSetId, IpSetKind, PortRange, RuleOut};
use crate::cluster::{LABEL_NAME, LABEL_NAMESPACE};
use crate::compile::{CompiledEntity, CompiledPolicy, CompiledRule, NamespaceScope};

/// What an IP set holds: the addresses (or named ports) of the endpoints and network sets a
/// selector matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct IpSetSpec {
    pub(crate) selector: Selector,
    /// For a named-port set: the port name.
    pub(crate) named_port: Option<String>,
}

impl IpSetSpec {
    pub(crate) fn kind(&self) -> IpSetKind {
        if self.named_port.is_some() {
            IpSetKind::NetPorts
        } else {
            IpSetKind::Nets
        }
    }
}

/// The IP sets some rules need, with their names.
pub(crate) type SetNeeds = Vec<(IpSetId, IpSetSpec)>;

fn and(mut parts: Vec<Expr>) -> Selector {
    match parts.len() {
        0 => Selector::all(),
        1 => Selector::from_expr(parts.remove(0)),
        _ => Selector::from_expr(Expr::And(parts)),
    }
}

fn scope_expr(scope: &NamespaceScope) -> Option<Expr> {
    match scope {
        NamespaceScope::Any => None,
        NamespaceScope::Own(ns) => Some(Expr::Equals {
            label: LABEL_NAMESPACE.to_owned(),
            value: ns.clone(),
        }),
        NamespaceScope::Global => Some(Expr::Not(Box::new(Expr::Has(LABEL_NAMESPACE.to_owned())))),
        NamespaceScope::AllNamespaced => Some(Expr::Has(LABEL_NAMESPACE.to_owned())),
        NamespaceScope::Matching(sel) => Some(Expr::And(vec![
            Expr::Has(LABEL_NAMESPACE.to_owned()),
            sel.expr().with_label_prefix("pcns."),
        ])),
    }
}

/// The selector of a policy's endpoints, with its namespace, namespace selector and service
/// account selector folded in.
pub(crate) fn policy_endpoint_selector(p: &CompiledPolicy) -> Selector {
    let mut parts = Vec::new();
    if let Some(ns) = &p.namespace {
        parts.extend(scope_expr(&NamespaceScope::Own(ns.clone())));
    }
    if !p.selector.is_all() {
        parts.push(p.selector.expr().clone());
    }
    if let Some(ns_sel) = &p.namespace_selector {
        parts.extend(scope_expr(&NamespaceScope::Matching(ns_sel.clone())));
    }
    if let Some(sa) = &p.service_account_selector {
        parts.push(sa.expr().with_label_prefix("pcsa."));
    }
    and(parts)
}

fn entity_selector(e: &CompiledEntity) -> Selector {
    let mut parts: Vec<Expr> = scope_expr(&e.scope).into_iter().collect();
    if let Some(sel) = &e.selector {
        parts.push(sel.expr().clone());
    }
    if !e.service_account_names.is_empty() {
        parts.push(Expr::In {
            label: format!("pcsa.{LABEL_NAME}"),
            values: e.service_account_names.iter().cloned().collect(),
        });
    }
    if let Some(sa) = &e.service_account_selector {
        parts.push(sa.expr().with_label_prefix("pcsa."));
    }
    and(parts)
}

fn need(needs: &mut SetNeeds, spec: IpSetSpec) -> IpSetId {
    let id: IpSetId = match &spec.named_port {
        None => spec.selector.id().into(),
        Some(port) => unique_id("n", &format!("{}|{port}", spec.selector.canonical())).into(),
    };
    if needs.iter().all(|(have, _)| *have != id) {
        needs.push((id.clone(), spec));
    }
    id
}

fn ports(
    specs: &[PortSpec],
    selector: &Selector,
    needs: &mut SetNeeds,
) -> (Vec<PortRange>, Vec<IpSetId>) {
    let mut ranges = Vec::new();
    let mut named = Vec::new();
    for p in specs {
        match p {
            PortSpec::Number(n) => ranges.push(PortRange {
                first: *n,
                last: *n,
            }),
            PortSpec::Range(a, b) => ranges.push(PortRange {
                first: *a,
                last: *b,
            }),
            PortSpec::Named(name) => named.push(need(
                needs,
                IpSetSpec {
                    selector: selector.clone(),
                    named_port: Some(name.clone()),
                },
            )),
        }
    }
    (ranges, named)
}

/// `None` when the half can never match (a Kubernetes Service match, which tabby cannot
/// resolve yet).
fn entity(e: &CompiledEntity, needs: &mut SetNeeds) -> Option<EntityOut> {
    if e.services {
        return None;
    }
    let mut out = EntityOut {
        nets: e.nets.clone(),
        not_nets: e.not_nets.clone(),
        ..EntityOut::default()
    };
    // A named port resolves on the endpoints the half selects, or on every endpoint.
    let mut port_selector = Selector::all();
    if e.has_selector() {
        let sel = entity_selector(e);
        out.ip_sets.push(need(
            needs,
            IpSetSpec {
                selector: sel.clone(),
                named_port: None,
            },
        ));
        port_selector = sel;
    }
    if let Some(not) = &e.not_selector {
        let excluded = CompiledEntity {
            selector: Some(not.clone()),
            service_account_names: Vec::new(),
            service_account_selector: None,
            ..e.clone()
        };
        out.not_ip_sets.push(need(
            needs,
            IpSetSpec {
                selector: entity_selector(&excluded),
                named_port: None,
            },
        ));
    }
    (out.ports, out.named_port_sets) = ports(&e.ports, &port_selector, needs);
    (out.not_ports, out.not_named_port_sets) = ports(&e.not_ports, &Selector::all(), needs);
    Some(out)
}

fn icmp(m: Option<(Option<u8>, Option<u8>)>) -> Option<IcmpMatch> {
    m.map(|(icmp_type, code)| IcmpMatch { icmp_type, code })
}

/// Converts rules, collecting the IP sets they need.
pub(crate) fn rules_out(rules: &[CompiledRule], needs: &mut SetNeeds) -> Vec<RuleOut> {
    rules
        .iter()
        .filter_map(|r| {
            Some(RuleOut {
                index: r.index,
                action: r.action,
                ip_version: r.ip_version,
                protocol: r.protocol.map(|p| p.number()),
                not_protocol: r.not_protocol.map(|p| p.number()),
                icmp: icmp(r.icmp),
                not_icmp: icmp(r.not_icmp),
                source: entity(&r.source, needs)?,
                destination: entity(&r.destination, needs)?,
            })
        })
        .collect()
}

/// A policy's rules for the directions it governs.
pub(crate) fn policy_rules(
    p: &CompiledPolicy,
    needs: &mut SetNeeds,
) -> (Vec<RuleOut>, Vec<RuleOut>) {
    let dir = |d: PolicyType, needs: &mut SetNeeds| {
        if p.types.contains(&d) {
            rules_out(p.rules(d), needs)
        } else {
            Vec::new()
        }
    };
    let ingress = dir(PolicyType::Ingress, needs);
    let egress = dir(PolicyType::Egress, needs);
    (ingress, egress)
}
