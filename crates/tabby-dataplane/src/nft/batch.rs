//! The pending changes as one nfnetlink element batch, when they are nothing but elements
//! added to or deleted from existing sets the fast path can encode (see [`crate::nfnl`]).
//! Anything else (a set or chain created, changed or removed, a dispatch entry, a set to
//! refill, an interval set) goes through `nft -f` as before.

use std::net::IpAddr;

use super::NftTable;
use super::names::TABLE;
use crate::nfnl::{ElementBatch, ElementKey, ElementOp, SetChange};

/// Most elements one batch carries: a netlink message must fit the socket's send buffer
/// (about 200 KiB by default; an IPv6 named-port element takes 36 bytes). Larger changes are
/// rare (a resync) and go through `nft`.
const MAX_ELEMENTS: usize = 2_048;

/// The key of one element of set `set`, parsed back from the element text the renderer wrote
/// (`names::set_name` says the part and family: `s4_`/`s6_` addresses, `n4_`/`n6_` address,
/// protocol number and port). `None` for interval sets and for anything that does not parse
/// as that set's type.
fn key(set: &str, element: &str) -> Option<ElementKey> {
    let v6 = match set.get(1..3)? {
        "4_" => false,
        "6_" => true,
        _ => return None,
    };
    let addr = |text: &str| {
        let a: IpAddr = text.parse().ok()?;
        (a.is_ipv6() == v6).then_some(a)
    };
    match set.as_bytes()[0] {
        b's' => Some(ElementKey::Addr(addr(element)?)),
        b'n' => {
            let mut fields = element.split(" . ");
            let key = ElementKey::AddrProtoPort {
                addr: addr(fields.next()?)?,
                protocol: fields.next()?.parse().ok()?,
                port: fields.next()?.parse().ok()?,
            };
            fields.next().is_none().then_some(key)
        }
        _ => None,
    }
}

fn keys<'a>(set: &str, elements: impl Iterator<Item = &'a String>) -> Option<Vec<ElementKey>> {
    elements.map(|e| key(set, e)).collect()
}

/// The batch for what is pending, or `None` when it needs `nft` (also before the first full
/// write). An empty batch means the pending changes cancel out.
pub(crate) fn element_batch(t: &NftTable) -> Option<ElementBatch> {
    let w = t.written.as_ref()?;
    let d = &t.dirty;
    if !d.chains.is_empty() || !d.from_wl.is_empty() || !d.to_wl.is_empty() {
        return None;
    }
    if !t.resets.is_empty() {
        return None;
    }
    let mut changes = Vec::new();
    let mut total = 0;
    for name in &d.sets {
        let set = t.sets.get(name)?;
        // New, redeclared or removed sets are nft's business.
        if w.sets.get(name) != Some(&set.decl) {
            return None;
        }
        let Some(ops) = t.pending.get(name) else {
            continue;
        };
        // Deletes first, as the script does (they are independent within a set anyway).
        for (op, elements) in [(ElementOp::Delete, &ops.delete), (ElementOp::Add, &ops.add)] {
            if elements.is_empty() {
                continue;
            }
            total += elements.len();
            if total > MAX_ELEMENTS {
                return None;
            }
            changes.push(SetChange {
                set: name.clone(),
                op,
                keys: keys(name, elements.iter())?,
            });
        }
    }
    Some(ElementBatch {
        table: TABLE.to_owned(),
        changes,
    })
}

#[cfg(test)]
mod tests;
