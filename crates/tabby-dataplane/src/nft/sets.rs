//! IP sets as nft sets: the members the calc engine gave, and the elements each nft set holds.
//!
//! Address sets are split per family into a hash set of single addresses and an interval set
//! of wider networks. Updating an interval set makes `nft` read every interval set's elements
//! first (to check overlaps), which costs about 100 ms with 2,000 sets loaded; a hash set
//! update reads none. Endpoint addresses, the members that change all the time, are single
//! addresses, so they stay in the cheap sets. Interval sets reject overlapping elements, so a
//! network inside another network of the same set is left out (it adds nothing).

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use tabby_calc::{IpSetId, IpSetKind, IpSetMember};

use super::names::{self, Family, SetPart};
use super::render::SetInfo;

/// One IP set as the engine described it.
#[derive(Debug, Clone)]
pub(crate) struct IpSet {
    kind: IpSetKind,
    members: BTreeSet<IpSetMember>,
    /// Members wider than one address, per family (so [`IpSet::info`] needs no scan).
    prefixes: [usize; 2],
}

/// Elements of the nft sets of one IP set: nft set name -> elements.
pub(crate) type Elements = BTreeMap<String, BTreeSet<String>>;

fn is_host(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

/// Networks with those inside another one left out; sorted.
fn outermost(nets: impl Iterator<Item = IpNet>) -> Vec<IpNet> {
    let mut sorted: Vec<IpNet> = nets.map(|n| n.trunc()).collect();
    // By address, widest first, so a network comes before the networks it contains.
    sorted.sort_by(|a, b| {
        a.network()
            .cmp(&b.network())
            .then(a.prefix_len().cmp(&b.prefix_len()))
    });
    let mut out: Vec<IpNet> = Vec::new();
    for n in sorted {
        if out.last().is_some_and(|last| last.contains(&n)) {
            continue;
        }
        out.push(n);
    }
    out
}

/// Where one member lives: the nft set and its element text, or `None` for a network wider
/// than one address (its element depends on the other networks; see [`outermost`]).
pub(crate) fn member_element(id: &IpSetId, m: &IpSetMember) -> Option<(String, String)> {
    match m {
        IpSetMember::Net(n) if is_host(n) => Some((
            names::set_name(id, SetPart::Hosts, Family::of(n)),
            n.addr().to_string(),
        )),
        IpSetMember::Net(_) => None,
        IpSetMember::NetPort {
            addr,
            protocol,
            port,
        } => {
            let f = if addr.is_ipv4() {
                Family::V4
            } else {
                Family::V6
            };
            Some((
                names::set_name(id, SetPart::NamedPorts, f),
                format!("{addr} . {protocol} . {port}"),
            ))
        }
    }
}

fn prefix_family(m: &IpSetMember) -> Option<Family> {
    match m {
        IpSetMember::Net(n) if !is_host(n) => Some(Family::of(n)),
        _ => None,
    }
}

impl IpSet {
    pub(crate) fn new(kind: IpSetKind, members: impl IntoIterator<Item = IpSetMember>) -> Self {
        let mut set = Self {
            kind,
            members: BTreeSet::new(),
            prefixes: [0; 2],
        };
        for m in members {
            set.add(m);
        }
        set
    }

    /// Adds a member; false when it was there already.
    pub(crate) fn add(&mut self, m: IpSetMember) -> bool {
        let fam = prefix_family(&m);
        let added = self.members.insert(m);
        if added && let Some(f) = fam {
            self.prefixes[f as usize] += 1;
        }
        added
    }

    /// Removes a member; false when it was not there.
    pub(crate) fn remove(&mut self, m: &IpSetMember) -> bool {
        let removed = self.members.remove(m);
        if removed && let Some(f) = prefix_family(m) {
            self.prefixes[f as usize] -= 1;
        }
        removed
    }

    /// What rules need to know.
    pub(crate) fn info(&self) -> SetInfo {
        SetInfo {
            kind: self.kind,
            prefixes: [self.prefixes[0] > 0, self.prefixes[1] > 0],
        }
    }

    /// The nft sets this IP set needs (name, declaration), with their elements.
    pub(crate) fn render(&self, id: &IpSetId) -> (Vec<(String, String)>, Elements) {
        let mut decls = Vec::new();
        let mut elements = Elements::new();
        let info = self.info();
        let comment = names::quoted(id);
        for f in Family::ALL {
            match self.kind {
                IpSetKind::Nets => {
                    let hosts = names::set_name(id, SetPart::Hosts, f);
                    decls.push((
                        hosts.clone(),
                        format!("{{ type {}; comment {comment}; }}", f.addr_type()),
                    ));
                    let host_elems = self
                        .members
                        .iter()
                        .filter_map(|m| match m {
                            IpSetMember::Net(n) if Family::of(n) == f && is_host(n) => {
                                Some(n.addr().to_string())
                            }
                            _ => None,
                        })
                        .collect();
                    elements.insert(hosts, host_elems);
                    if info.prefixes[f as usize] {
                        let prefixes = names::set_name(id, SetPart::Prefixes, f);
                        decls.push((
                            prefixes.clone(),
                            format!(
                                "{{ type {}; flags interval; comment {comment}; }}",
                                f.addr_type()
                            ),
                        ));
                        let nets = outermost(self.members.iter().filter_map(|m| match m {
                            IpSetMember::Net(n) if Family::of(n) == f && !is_host(n) => Some(*n),
                            _ => None,
                        }));
                        elements.insert(prefixes, nets.iter().map(ToString::to_string).collect());
                    }
                }
                IpSetKind::NetPorts => {
                    let name = names::set_name(id, SetPart::NamedPorts, f);
                    decls.push((
                        name.clone(),
                        format!(
                            "{{ type {} . inet_proto . inet_service; comment {comment}; }}",
                            f.addr_type()
                        ),
                    ));
                    let elems = self
                        .members
                        .iter()
                        .filter_map(|m| match m {
                            IpSetMember::NetPort {
                                addr,
                                protocol,
                                port,
                            } if (f == Family::V4) == addr.is_ipv4() => {
                                Some(format!("{addr} . {protocol} . {port}"))
                            }
                            _ => None,
                        })
                        .collect();
                    elements.insert(name, elems);
                }
            }
        }
        (decls, elements)
    }
}
