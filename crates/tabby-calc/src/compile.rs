//! Policies and rules in evaluable form: selectors parsed, nets and ports parsed, and the
//! namespace scoping of Calico's rule selectors made explicit. Anything that cannot be compiled
//! fails closed: the policy (or profile) denies everything, and a note says why.

use ipnet::IpNet;
use tabby_model::policy::{Action, EntityRule, PolicySpec, PolicyType, Rule};
use tabby_model::selector::Selector;
use tabby_model::values::{PortSpec, Protocol, parse_net};
use tabby_model::{Kind, Object};

/// Which namespaces a rule's selector reaches.
#[derive(Debug, Clone, PartialEq)]
pub enum NamespaceScope {
    /// Any endpoint or network set, namespaced or not (global policies without a
    /// namespaceSelector).
    Any,
    /// Only the policy's own namespace (a namespaced policy's selector without a
    /// namespaceSelector).
    Own(String),
    /// Only non-namespaced entities (`namespaceSelector: global()`).
    Global,
    /// Every namespace (`namespaceSelector: all()`).
    AllNamespaced,
    /// Namespaces whose labels match.
    Matching(Selector),
}

/// A source or destination match.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledEntity {
    /// Networks, ORed (empty: no constraint).
    pub nets: Vec<IpNet>,
    /// Networks that must not match.
    pub not_nets: Vec<IpNet>,
    /// Entities whose labels match, within `scope`. `None` with a scope other than `Any` means
    /// every entity in the scope.
    pub selector: Option<Selector>,
    /// Entities that must not match (within the same scope).
    pub not_selector: Option<Selector>,
    /// Namespace scope of the selectors.
    pub scope: NamespaceScope,
    /// Whether a namespaceSelector was given: then, even without a selector, only entities in
    /// the scope match.
    pub namespace_selector_given: bool,
    /// Ports, ORed (empty: no constraint).
    pub ports: Vec<PortSpec>,
    /// Ports that must not match.
    pub not_ports: Vec<PortSpec>,
    /// Service account names, ORed (empty: no constraint).
    pub service_account_names: Vec<String>,
    /// Service account label selector.
    pub service_account_selector: Option<Selector>,
    /// A Kubernetes Service match, which tabby cannot evaluate yet: the entity never matches.
    pub services: bool,
}

impl CompiledEntity {
    /// Whether the entity restricts which endpoints or sets match by labels (its selector,
    /// namespace selector or service accounts).
    pub fn has_selector(&self) -> bool {
        self.selector.is_some()
            || self.namespace_selector_given
            || !self.service_account_names.is_empty()
            || self.service_account_selector.is_some()
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledRule {
    /// Position in its policy's list for this direction.
    pub index: usize,
    /// What a match does.
    pub action: Action,
    /// 4 or 6.
    pub ip_version: Option<u8>,
    /// Protocol.
    pub protocol: Option<Protocol>,
    /// Protocol that must not match.
    pub not_protocol: Option<Protocol>,
    /// ICMP type and code.
    pub icmp: Option<(Option<u8>, Option<u8>)>,
    /// ICMP type and code that must not match.
    pub not_icmp: Option<(Option<u8>, Option<u8>)>,
    /// Source match.
    pub source: CompiledEntity,
    /// Destination match.
    pub destination: CompiledEntity,
}

/// A policy ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledPolicy {
    /// GlobalNetworkPolicy, NetworkPolicy or (Kubernetes) NetworkPolicy.
    pub kind: Kind,
    /// Namespace of a namespaced policy.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Tier.
    pub tier: String,
    /// Order within the tier.
    pub order: Option<f64>,
    /// Tie-break key, `name/namespace/kind` as Calico sorts.
    pub sort_name: String,
    /// The policy's endpoint selector (namespaced policies also require their namespace).
    pub selector: Selector,
    /// Global policies: namespaces whose endpoints the policy applies to.
    pub namespace_selector: Option<Selector>,
    /// Service accounts (by their labels) whose endpoints the policy applies to.
    pub service_account_selector: Option<Selector>,
    /// Directions it governs.
    pub types: Vec<PolicyType>,
    /// Ingress rules.
    pub ingress: Vec<CompiledRule>,
    /// Egress rules.
    pub egress: Vec<CompiledRule>,
}

impl CompiledPolicy {
    /// How people name it: `GlobalNetworkPolicy "deny-db"`.
    pub fn describe(&self) -> String {
        tabby_model::describe(
            self.kind,
            self.namespace.as_deref().unwrap_or(""),
            &self.name,
        )
    }

    /// The rules of one direction.
    pub fn rules(&self, dir: PolicyType) -> &[CompiledRule] {
        match dir {
            PolicyType::Ingress => &self.ingress,
            PolicyType::Egress => &self.egress,
        }
    }
}

fn parse_selector(what: &str, expr: &str) -> Result<Selector, String> {
    Selector::parse(expr).map_err(|e| format!("{what} {expr:?} is invalid: {e}"))
}

fn deny_all() -> CompiledRule {
    let any = || CompiledEntity {
        nets: Vec::new(),
        not_nets: Vec::new(),
        selector: None,
        not_selector: None,
        scope: NamespaceScope::Any,
        namespace_selector_given: false,
        ports: Vec::new(),
        not_ports: Vec::new(),
        service_account_names: Vec::new(),
        service_account_selector: None,
        services: false,
    };
    CompiledRule {
        index: 0,
        action: Action::Deny,
        ip_version: None,
        protocol: None,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: any(),
        destination: any(),
    }
}

/// Compiles a policy. A broken rule makes the whole policy deny everything on the endpoints it
/// selects; a broken selector of its own makes it deny everything on every endpoint it could
/// have selected (its namespace's, or all for a global policy). Either way a note says why.
pub(crate) fn compile_policy(
    kind: Kind,
    p: &Object<PolicySpec>,
    notes: &mut Vec<String>,
) -> CompiledPolicy {
    let spec = &p.spec;
    let namespace = p
        .metadata
        .namespace
        .clone()
        .filter(|_| kind.info().namespaced);
    let selectors = parse_selector("selector", spec.selector.as_deref().unwrap_or("all()"))
        .and_then(|selector| {
            let optional = |what: &str, v: &Option<String>| {
                v.as_deref().map(|e| parse_selector(what, e)).transpose()
            };
            Ok((
                selector,
                optional("namespaceSelector", &spec.namespace_selector)?,
                optional("serviceAccountSelector", &spec.service_account_selector)?,
            ))
        });
    let (selector, namespace_selector, service_account_selector) = match selectors {
        Ok(s) => s,
        Err(e) => {
            // Nobody can know which endpoints the policy was meant for, so it isolates every
            // endpoint it could have meant: fail closed rather than leave them open.
            let scope = if namespace.is_some() {
                "every endpoint of its namespace"
            } else {
                "every endpoint"
            };
            notes.push(format!(
                "{e}; the policy denies everything on {scope} instead"
            ));
            return CompiledPolicy {
                ingress: vec![deny_all()],
                egress: vec![deny_all()],
                ..identity(kind, p, namespace)
            };
        }
    };
    let rules = try_compile_rules(&spec.ingress, namespace.as_deref())
        .and_then(|i| try_compile_rules(&spec.egress, namespace.as_deref()).map(|e| (i, e)));
    let (ingress, egress) = rules.unwrap_or_else(|e| {
        notes.push(format!(
            "{e}; the policy denies everything on its endpoints instead"
        ));
        (vec![deny_all()], vec![deny_all()])
    });
    CompiledPolicy {
        selector,
        namespace_selector,
        service_account_selector,
        ingress,
        egress,
        ..identity(kind, p, namespace)
    }
}

/// A policy's name, tier, order and types, with rules that match nothing.
fn identity(kind: Kind, p: &Object<PolicySpec>, namespace: Option<String>) -> CompiledPolicy {
    let ns = namespace.clone().unwrap_or_default();
    CompiledPolicy {
        kind,
        sort_name: format!("{}/{ns}/{}", p.metadata.name, kind.info().store_name),
        namespace,
        name: p.metadata.name.clone(),
        tier: p.spec.tier.clone().unwrap_or_else(|| "default".to_owned()),
        order: p.spec.order,
        selector: Selector::all(),
        namespace_selector: None,
        service_account_selector: None,
        types: p.spec.effective_types(),
        ingress: Vec::new(),
        egress: Vec::new(),
    }
}

/// Compiles a profile's (or any policy-less) rules; on failure a note is recorded and the
/// rules become a single Deny.
pub(crate) fn compile_rules(
    rules: &[Rule],
    namespace: Option<&str>,
    notes: &mut Vec<String>,
) -> Vec<CompiledRule> {
    try_compile_rules(rules, namespace).unwrap_or_else(|e| {
        notes.push(format!("{e}; it denies everything instead"));
        vec![deny_all()]
    })
}

fn try_compile_rules(rules: &[Rule], namespace: Option<&str>) -> Result<Vec<CompiledRule>, String> {
    rules
        .iter()
        .enumerate()
        .map(|(index, r)| {
            compile_rule(index, r, namespace).map_err(|e| format!("rule {index}: {e}"))
        })
        .collect()
}

fn protocol(v: Option<&tabby_model::values::IntOrString>) -> Result<Option<Protocol>, String> {
    v.map(Protocol::parse).transpose()
}

fn icmp(m: Option<&tabby_model::policy::IcmpMatch>) -> Option<(Option<u8>, Option<u8>)> {
    m.map(|m| {
        (
            m.icmp_type.and_then(|t| u8::try_from(t).ok()),
            m.code.and_then(|c| u8::try_from(c).ok()),
        )
    })
}

fn compile_rule(index: usize, r: &Rule, namespace: Option<&str>) -> Result<CompiledRule, String> {
    Ok(CompiledRule {
        index,
        action: r.action,
        ip_version: r.ip_version.and_then(|v| u8::try_from(v).ok()),
        protocol: protocol(r.protocol.as_ref())?,
        not_protocol: protocol(r.not_protocol.as_ref())?,
        icmp: icmp(r.icmp.as_ref()),
        not_icmp: icmp(r.not_icmp.as_ref()),
        source: compile_entity(r.source.as_ref(), namespace).map_err(|e| format!("source: {e}"))?,
        destination: compile_entity(r.destination.as_ref(), namespace)
            .map_err(|e| format!("destination: {e}"))?,
    })
}

fn compile_entity(
    e: Option<&EntityRule>,
    namespace: Option<&str>,
) -> Result<CompiledEntity, String> {
    let default = EntityRule::default();
    let e = e.unwrap_or(&default);
    let nets = |v: &[String]| {
        v.iter()
            .map(|n| parse_net(n).map(|n| n.trunc()))
            .collect::<Result<Vec<_>, _>>()
    };
    let ports = |v: &[tabby_model::values::IntOrString]| {
        v.iter().map(PortSpec::parse).collect::<Result<Vec<_>, _>>()
    };
    let selector = e
        .selector
        .as_deref()
        .map(|s| parse_selector("selector", s))
        .transpose()?;
    let not_selector = e
        .not_selector
        .as_deref()
        .map(|s| parse_selector("notSelector", s))
        .transpose()?;
    // Calico's getEndpointSelector: a namespaceSelector scopes the selectors; without one, a
    // namespaced policy's selectors stay in its own namespace and a global policy's reach
    // everything.
    let namespace_selector_given = e
        .namespace_selector
        .as_deref()
        .is_some_and(|s| !s.trim().is_empty());
    let scope = match e.namespace_selector.as_deref().map(str::trim) {
        Some(ns) if !ns.is_empty() => {
            let sel = parse_selector("namespaceSelector", ns)?;
            if sel.is_all() {
                NamespaceScope::AllNamespaced
            } else if sel.canonical() == "global()" {
                NamespaceScope::Global
            } else {
                NamespaceScope::Matching(sel)
            }
        }
        _ => match namespace {
            Some(ns)
                if selector.is_some() || not_selector.is_some() || e.service_accounts.is_some() =>
            {
                NamespaceScope::Own(ns.to_owned())
            }
            _ => NamespaceScope::Any,
        },
    };
    let (service_account_names, service_account_selector) = match &e.service_accounts {
        Some(sa) => (
            sa.names.clone(),
            sa.selector
                .as_deref()
                .map(|s| parse_selector("serviceAccounts.selector", s))
                .transpose()?,
        ),
        None => (Vec::new(), None),
    };
    Ok(CompiledEntity {
        nets: nets(&e.nets)?,
        not_nets: nets(&e.not_nets)?,
        selector,
        not_selector,
        scope,
        namespace_selector_given,
        ports: ports(&e.ports)?,
        not_ports: ports(&e.not_ports)?,
        service_account_names,
        service_account_selector,
        services: e.services.is_some(),
    })
}
