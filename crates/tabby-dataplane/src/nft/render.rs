//! Rules as nft text: policy and profile rules, endpoint chains, the fixed chains.
//!
//! A calc rule ANDs all its fields, but ORs ports with named ports, and an address set may be
//! split into a hosts part and a prefixes part; nft has no OR inside one rule, so such a rule
//! becomes several nft rules with the same action, counter and comment (first match wins, so
//! the verdict is that of the OR). Family-specific matches (networks, sets) split a rule into
//! an IPv4 and an IPv6 variant.

use std::fmt::Write as _;

use ipnet::IpNet;
use tabby_calc::{EndpointOut, EntityOut, IcmpMatch, IpSetId, IpSetKind, PortRange, RuleOut};
use tabby_model::policy::Action;

use super::names::{self, Direction, Family, SetPart, quoted};

/// Mark bit: a policy or profile allowed the packet in this direction (Calico's accept bit).
pub const MARK_ACCEPT: u32 = 0x0001_0000;
/// Mark bit: a policy passed the packet to the next tier (Calico's pass bit).
pub const MARK_PASS: u32 = 0x0002_0000;

/// Log prefix of Log rules, as Calico's `calico-packet`.
const LOG_PREFIX: &str = "tabby-packet: ";

/// Protocols that have ports (what `th dport` may read).
const PORT_PROTOCOLS: &str = "{ tcp, udp, sctp, udplite }";

/// What the renderer needs to know about an IP set a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SetInfo {
    /// What it holds.
    pub(crate) kind: IpSetKind,
    /// Whether the IPv4 / IPv6 part has networks wider than one address (so a prefixes set
    /// exists and a match must also look there).
    pub(crate) prefixes: [bool; 2],
}

impl SetInfo {
    fn has_prefixes(&self, family: Family) -> bool {
        self.prefixes[family as usize]
    }
}

/// Whose rule this is, for the comment and for what Allow and Pass mean.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Owner<'a> {
    /// A policy in a tier.
    Policy {
        /// Tier name.
        tier: &'a str,
        /// `gnp/name` etc.
        label: &'a str,
    },
    /// A profile.
    Profile {
        /// Profile name.
        name: &'a str,
    },
}

/// Why a rule cannot be rendered: its chain then drops everything (fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unrenderable(pub(crate) String);

fn protocol_name(p: u8) -> String {
    match p {
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        58 => "ipv6-icmp".to_owned(),
        132 => "sctp".to_owned(),
        136 => "udplite".to_owned(),
        n => n.to_string(),
    }
}

fn port_list(ports: &[PortRange]) -> String {
    let items: Vec<String> = ports
        .iter()
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}-{}", r.first, r.last)
            }
        })
        .collect();
    anon_set(&items)
}

/// `x` for one item, `{ x, y }` for several.
fn anon_set(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

fn nets_of(nets: &[IpNet], family: Family) -> Vec<String> {
    nets.iter()
        .filter(|n| Family::of(n) == family)
        .map(|n| {
            let n = n.trunc();
            if n.prefix_len() == n.max_prefix_len() {
                n.addr().to_string()
            } else {
                n.to_string()
            }
        })
        .collect()
}

fn entity_has_addresses(e: &EntityOut) -> bool {
    !e.nets.is_empty()
        || !e.not_nets.is_empty()
        || !e.ip_sets.is_empty()
        || !e.not_ip_sets.is_empty()
        || !e.named_port_sets.is_empty()
        || !e.not_named_port_sets.is_empty()
}

/// Which side of the packet an entity describes.
#[derive(Clone, Copy)]
enum Side {
    Source,
    Destination,
}

impl Side {
    fn addr(self) -> &'static str {
        match self {
            Self::Source => "saddr",
            Self::Destination => "daddr",
        }
    }

    fn port(self) -> &'static str {
        match self {
            Self::Source => "sport",
            Self::Destination => "dport",
        }
    }
}

/// The nft matches for one entity in one family, as alternatives (ORed) of conjunctions
/// (ANDed). `None`: the entity cannot match in this family.
fn entity_alternatives(
    e: &EntityOut,
    side: Side,
    family: Option<Family>,
    protocol_known: bool,
    sets: &dyn Fn(&IpSetId) -> Option<SetInfo>,
) -> Result<Option<Vec<Vec<String>>>, Unrenderable> {
    let mut all = Vec::new();
    // Alternatives to multiply: each inner Vec is a choice of one match.
    let mut choices: Vec<Vec<String>> = Vec::new();
    let lookup = |id: &IpSetId, want: IpSetKind| -> Result<SetInfo, Unrenderable> {
        match sets(id) {
            Some(info) if info.kind == want => Ok(info),
            Some(_) => Err(Unrenderable(format!("IP set {id} is of the wrong kind"))),
            None => Err(Unrenderable(format!("IP set {id} is unknown"))),
        }
    };
    if let Some(f) = family {
        let kw = f.keyword();
        let addr = side.addr();
        if !e.nets.is_empty() {
            let nets = nets_of(&e.nets, f);
            if nets.is_empty() {
                return Ok(None);
            }
            all.push(format!("{kw} {addr} {}", anon_set(&nets)));
        }
        let not_nets = nets_of(&e.not_nets, f);
        if !not_nets.is_empty() {
            all.push(format!("{kw} {addr} != {}", anon_set(&not_nets)));
        }
        for id in &e.ip_sets {
            let info = lookup(id, IpSetKind::Nets)?;
            let hosts = format!("{kw} {addr} @{}", names::set_name(id, SetPart::Hosts, f));
            if info.has_prefixes(f) {
                let prefixes =
                    format!("{kw} {addr} @{}", names::set_name(id, SetPart::Prefixes, f));
                choices.push(vec![hosts, prefixes]);
            } else {
                all.push(hosts);
            }
        }
        for id in &e.not_ip_sets {
            let info = lookup(id, IpSetKind::Nets)?;
            all.push(format!(
                "{kw} {addr} != @{}",
                names::set_name(id, SetPart::Hosts, f)
            ));
            if info.has_prefixes(f) {
                all.push(format!(
                    "{kw} {addr} != @{}",
                    names::set_name(id, SetPart::Prefixes, f)
                ));
            }
        }
    }
    let guard = if protocol_known {
        String::new()
    } else {
        format!("meta l4proto {PORT_PROTOCOLS} ")
    };
    let port = side.port();
    if !e.ports.is_empty() || !e.named_port_sets.is_empty() {
        let mut alts = Vec::new();
        if !e.ports.is_empty() {
            alts.push(format!("{guard}th {port} {}", port_list(&e.ports)));
        }
        for id in &e.named_port_sets {
            lookup(id, IpSetKind::NetPorts)?;
            let Some(f) = family else {
                return Err(Unrenderable(format!(
                    "named-port set {id} in a rule without a family"
                )));
            };
            alts.push(format!(
                "{} {} . meta l4proto . th {port} @{}",
                f.keyword(),
                side.addr(),
                names::set_name(id, SetPart::NamedPorts, f)
            ));
        }
        choices.push(alts);
    }
    if !e.not_ports.is_empty() {
        all.push(format!("{guard}th {port} != {}", port_list(&e.not_ports)));
    }
    for id in &e.not_named_port_sets {
        lookup(id, IpSetKind::NetPorts)?;
        if let Some(f) = family {
            all.push(format!(
                "{} {} . meta l4proto . th {port} != @{}",
                f.keyword(),
                side.addr(),
                names::set_name(id, SetPart::NamedPorts, f)
            ));
        }
    }
    let mut out = vec![all];
    for choice in choices {
        out = out
            .iter()
            .flat_map(|conj| {
                choice.iter().map(move |m| {
                    let mut c = conj.clone();
                    c.push(m.clone());
                    c
                })
            })
            .collect();
    }
    Ok(Some(out))
}

fn icmp_matches(m: IcmpMatch, v6: bool, negate: bool) -> Vec<String> {
    let kw = if v6 { "icmpv6" } else { "icmp" };
    match (m.icmp_type, m.code, negate) {
        (Some(t), Some(c), false) => vec![format!("{kw} type {t} {kw} code {c}")],
        (Some(t), None, false) => vec![format!("{kw} type {t}")],
        (None, Some(c), false) => vec![format!("{kw} code {c}")],
        (Some(t), Some(c), true) => vec![format!("{kw} type . {kw} code != {{ {t} . {c} }}")],
        (Some(t), None, true) => vec![format!("{kw} type != {t}")],
        (None, Some(c), true) => vec![format!("{kw} code != {c}")],
        (None, None, _) => Vec::new(),
    }
}

fn action_text(action: Action, owner: Owner<'_>) -> String {
    match (action, owner) {
        (Action::Allow, _) => format!("meta mark set meta mark | {MARK_ACCEPT:#010x} return"),
        (Action::Deny, _) => "drop".to_owned(),
        (Action::Pass, Owner::Policy { .. }) => {
            format!("meta mark set meta mark | {MARK_PASS:#010x} return")
        }
        // A profile's Pass moves on to the next profile.
        (Action::Pass, Owner::Profile { .. }) => "return".to_owned(),
        (Action::Log, _) => format!("log prefix \"{LOG_PREFIX}\""),
    }
}

fn comment(owner: Owner<'_>, dir: Direction, index: usize) -> String {
    match owner {
        Owner::Policy { tier, label } => quoted(&format!(
            "tier {tier} policy {label} {} rule {index}",
            dir.word()
        )),
        Owner::Profile { name } => quoted(&format!("profile {name} {} rule {index}", dir.word())),
    }
}

/// The nft rules (text after `add rule inet tabby CHAIN `) for one calc rule.
pub(crate) fn rule(
    r: &RuleOut,
    owner: Owner<'_>,
    dir: Direction,
    sets: &dyn Fn(&IpSetId) -> Option<SetInfo>,
) -> Result<Vec<String>, Unrenderable> {
    let families: Vec<Option<Family>> =
        if entity_has_addresses(&r.source) || entity_has_addresses(&r.destination) {
            Family::ALL
                .into_iter()
                .filter(|f| match r.ip_version {
                    Some(4) => *f == Family::V4,
                    Some(6) => *f == Family::V6,
                    _ => true,
                })
                .filter(|f| match r.protocol {
                    Some(1) => *f == Family::V4,
                    Some(58) => *f == Family::V6,
                    _ => true,
                })
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
    let tail = format!(
        "counter {} comment {}",
        action_text(r.action, owner),
        comment(owner, dir, r.index)
    );
    let mut out = Vec::new();
    for family in families {
        let mut common = Vec::new();
        match (family, r.ip_version) {
            (Some(f), _) => common.push(format!("meta nfproto {}", f.nfproto())),
            (None, Some(4)) => common.push("meta nfproto ipv4".to_owned()),
            (None, Some(6)) => common.push("meta nfproto ipv6".to_owned()),
            (None, _) => {}
        }
        if let Some(p) = r.protocol {
            common.push(format!("meta l4proto {}", protocol_name(p)));
        }
        if let Some(p) = r.not_protocol {
            common.push(format!("meta l4proto != {}", protocol_name(p)));
        }
        let v6 = r.protocol == Some(58);
        if let Some(m) = r.icmp {
            common.extend(icmp_matches(m, v6, false));
        }
        if let Some(m) = r.not_icmp {
            common.extend(icmp_matches(m, v6, true));
        }
        let known = r.protocol.is_some();
        let Some(src) = entity_alternatives(&r.source, Side::Source, family, known, sets)? else {
            continue;
        };
        let Some(dst) =
            entity_alternatives(&r.destination, Side::Destination, family, known, sets)?
        else {
            continue;
        };
        for s in &src {
            for d in &dst {
                let mut line = String::new();
                for m in common.iter().chain(s).chain(d) {
                    line.push_str(m);
                    line.push(' ');
                }
                line.push_str(&tail);
                out.push(line);
            }
        }
    }
    Ok(out)
}

/// A whole policy or profile chain. A rule that cannot be rendered turns the chain into a
/// single drop: fail closed rather than skip a Deny.
pub(crate) fn rules_chain(
    rules: &[RuleOut],
    owner: Owner<'_>,
    dir: Direction,
    sets: &dyn Fn(&IpSetId) -> Option<SetInfo>,
) -> Vec<String> {
    let mut out = Vec::new();
    for r in rules {
        match rule(r, owner, dir, sets) {
            Ok(lines) => out.extend(lines),
            Err(Unrenderable(why)) => {
                let who = match owner {
                    Owner::Policy { label, .. } => label.to_owned(),
                    Owner::Profile { name } => format!("profile {name}"),
                };
                tracing::warn!(%who, direction = dir.word(), rule = r.index, %why, "rule cannot be rendered; dropping all traffic the chain sees");
                return vec![format!(
                    "counter drop comment {}",
                    quoted(&format!(
                        "{who} {} rule {}: {why}: fail closed",
                        dir.word(),
                        r.index
                    ))
                )];
            }
        }
    }
    out
}

/// What an endpoint chain needs to know about the policies and profiles it names.
pub(crate) trait Known {
    fn policy(&self, id: &tabby_calc::PolicyId) -> bool;
    fn profile(&self, name: &str) -> bool;
}

/// The chain of one endpoint in one direction: anti-spoofing (egress), then the tiers, then
/// the profiles (see the crate header for the layout).
pub(crate) fn endpoint_chain(ep: &EndpointOut, dir: Direction, known: &dyn Known) -> Vec<String> {
    let mut out = Vec::new();
    if dir == Direction::Egress {
        for f in Family::ALL {
            let ips = nets_of(&ep.ips, f);
            if ips.is_empty() {
                out.push(format!(
                    "meta nfproto {} counter drop comment {}",
                    f.nfproto(),
                    quoted(&format!("workload has no {} address", f.nfproto()))
                ));
            } else {
                out.push(format!(
                    "{} saddr != {} counter drop comment \"source is not the workload's address\"",
                    f.keyword(),
                    anon_set(&ips)
                ));
            }
        }
    }
    out.push(format!(
        "meta mark set meta mark & {:#010x}",
        !(MARK_ACCEPT | MARK_PASS)
    ));
    let accepted = format!("meta mark & {MARK_ACCEPT:#010x} == {MARK_ACCEPT:#010x} return");
    let pass_clear = format!("meta mark & {MARK_PASS:#010x} == 0");
    let mut first_tier = true;
    for tier in &ep.tiers {
        let list = match dir {
            Direction::Ingress => &tier.ingress,
            Direction::Egress => &tier.egress,
        };
        if list.is_empty() {
            continue;
        }
        if !first_tier {
            out.push(format!(
                "meta mark set meta mark & {:#010x} comment {}",
                !MARK_PASS,
                quoted(&format!("start of tier {}", tier.name))
            ));
        }
        first_tier = false;
        for (i, id) in list.iter().enumerate() {
            let label = names::policy_label(id);
            // The first policy of a tier runs with the pass bit just cleared.
            let guard = if i == 0 {
                String::new()
            } else {
                format!("{pass_clear} ")
            };
            if known.policy(id) {
                out.push(format!(
                    "{guard}jump {} comment {}",
                    names::policy_chain(id, dir),
                    quoted(&format!("tier {} policy {label}", tier.name))
                ));
                out.push(accepted.clone());
            } else {
                out.push(format!(
                    "{guard}counter drop comment {}",
                    quoted(&format!(
                        "tier {} policy {label} is not known: fail closed",
                        tier.name
                    ))
                ));
            }
        }
        if tier.default_action != Action::Pass {
            out.push(format!(
                "{pass_clear} counter drop comment {}",
                quoted(&format!(
                    "end of tier {}: no policy allowed or passed: default deny",
                    tier.name
                ))
            ));
        }
    }
    for name in &ep.profiles {
        if !known.profile(name) {
            out.push(format!(
                "counter drop comment {}",
                quoted(&format!("profile {name} is not known: fail closed"))
            ));
            return out;
        }
        out.push(format!(
            "jump {} comment {}",
            names::profile_chain(name, dir),
            quoted(&format!("profile {name}"))
        ));
        out.push(accepted.clone());
    }
    let last = match &ep.missing_profile {
        Some(p) => format!("profile {p} does not exist: fail closed"),
        None => "no profile allowed".to_owned(),
    };
    out.push(format!("counter drop comment {}", quoted(&last)));
    out
}

/// What becomes of workload traffic to the host itself once its egress policy allowed it
/// (Calico's `DefaultEndpointToHostAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointToHost {
    /// Drop it (Felix's default): workloads reach the host only through another allowance.
    #[default]
    Drop,
    /// Accept it (what Calico's Kubernetes manifests set).
    Accept,
}

/// The fixed chains: (name, declaration, rules), in the order they are written.
pub(crate) fn static_chains(to_host: EndpointToHost) -> Vec<(&'static str, String, Vec<String>)> {
    let prefix = names::WORKLOAD_IFACE_PREFIX;
    let ct = "ct state vmap { invalid : drop, established : accept, related : accept }".to_owned();
    let hook = |h: &str| format!(" {{ type filter hook {h} priority filter; policy accept; }}");
    let mut to_host_action = String::new();
    let _ = write!(
        to_host_action,
        "counter {} comment \"endpoint to host: {}\"",
        match to_host {
            EndpointToHost::Drop => "drop",
            EndpointToHost::Accept => "accept",
        },
        match to_host {
            EndpointToHost::Drop => "drop",
            EndpointToHost::Accept => "accept",
        }
    );
    vec![
        (
            "forward",
            hook("forward"),
            vec![
                ct.clone(),
                format!("iifname \"{prefix}*\" jump from_wl_dispatch"),
                format!("oifname \"{prefix}*\" jump to_wl_dispatch"),
            ],
        ),
        (
            "input",
            hook("input"),
            vec![ct.clone(), format!("iifname \"{prefix}*\" goto wl_to_host")],
        ),
        (
            "output",
            hook("output"),
            vec![
                ct,
                format!(
                    "oifname \"{prefix}*\" accept comment \"host to workload is not policed (as Calico)\""
                ),
            ],
        ),
        (
            "wl_to_host",
            String::new(),
            vec![
                "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept"
                    .to_owned(),
                "jump from_wl_dispatch".to_owned(),
                to_host_action,
            ],
        ),
        (
            "from_wl_dispatch",
            String::new(),
            vec![
                "iifname vmap @from_wl".to_owned(),
                "counter drop comment \"unknown workload interface: fail closed\"".to_owned(),
            ],
        ),
        (
            "to_wl_dispatch",
            String::new(),
            vec![
                "oifname vmap @to_wl".to_owned(),
                "counter drop comment \"unknown workload interface: fail closed\"".to_owned(),
            ],
        ),
    ]
}
