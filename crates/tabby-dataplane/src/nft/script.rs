//! Writing `nft -f` scripts. Every script is one transaction: nft applies all of it or none.
//!
//! Objects are declared before anything refers to them and deleted after the last reference
//! is gone, all in one file: new sets and their elements, new chains (empty), chain bodies,
//! verdict-map elements, then removals of map elements, chains and sets.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::names::{TABLE, iface_key};
use super::{NftTable, Written, render};

const T: &str = "inet tabby";

/// `add element` lines, a few hundred elements per line (nft's parser copes with any number,
/// but short lines keep error messages readable).
fn elements(out: &mut String, verb: &str, set: &str, elems: &BTreeSet<String>) {
    let list: Vec<&String> = elems.iter().collect();
    for chunk in list.chunks(256) {
        let joined: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
        let _ = writeln!(out, "{verb} element {T} {set} {{ {} }}", joined.join(", "));
    }
}

fn chain_rules(out: &mut String, chain: &str, rules: &[String]) {
    for r in rules {
        let _ = writeln!(out, "add rule {T} {chain} {r}");
    }
}

fn map_elements<'a>(
    out: &mut String,
    verb: &str,
    map: &str,
    items: impl Iterator<Item = (&'a String, Option<&'a String>)>,
) {
    for (iface, chain) in items {
        match chain {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "{verb} element {T} {map} {{ {} : goto {c} }}",
                    iface_key(iface)
                );
            }
            None => {
                let _ = writeln!(out, "{verb} element {T} {map} {{ {} }}", iface_key(iface));
            }
        }
    }
}

/// The whole table, replacing whatever is there.
pub(crate) fn full(t: &NftTable) -> String {
    debug_assert_eq!(TABLE, "tabby");
    let mut out = String::new();
    let _ = writeln!(out, "add table {T}");
    let _ = writeln!(out, "delete table {T}");
    let _ = writeln!(out, "add table {T}");
    for (name, set) in &t.sets {
        let _ = writeln!(out, "add set {T} {name} {}", set.decl);
        elements(&mut out, "add", name, &set.elements);
    }
    let _ = writeln!(out, "add map {T} from_wl {{ type ifname : verdict; }}");
    let _ = writeln!(out, "add map {T} to_wl {{ type ifname : verdict; }}");
    let fixed = render::static_chains(t.config.endpoint_to_host);
    for (name, decl, _) in &fixed {
        let _ = writeln!(out, "add chain {T} {name}{decl}");
    }
    for name in t.chains.keys() {
        let _ = writeln!(out, "add chain {T} {name}");
    }
    for (name, rules) in &t.chains {
        chain_rules(&mut out, name, rules);
    }
    for (name, _, rules) in &fixed {
        chain_rules(&mut out, name, rules);
    }
    map_elements(
        &mut out,
        "add",
        "from_wl",
        t.from_wl.iter().map(|(k, v)| (k, Some(v))),
    );
    map_elements(
        &mut out,
        "add",
        "to_wl",
        t.to_wl.iter().map(|(k, v)| (k, Some(v))),
    );
    out
}

/// Only what changed since `w` was written.
pub(crate) fn incremental(t: &NftTable, w: &Written) -> String {
    let mut out = String::new();
    let d = &t.dirty;
    // Sets: new ones with their elements; changed ones by element.
    for name in &d.sets {
        let Some(set) = t.sets.get(name) else {
            continue;
        };
        if !w.sets.contains_key(name) {
            let _ = writeln!(out, "add set {T} {name} {}", set.decl);
            elements(&mut out, "add", name, &set.elements);
        } else if t.resets.contains(name) {
            let _ = writeln!(out, "flush set {T} {name}");
            elements(&mut out, "add", name, &set.elements);
        } else if let Some(ops) = t.pending.get(name) {
            elements(&mut out, "delete", name, &ops.delete);
            elements(&mut out, "add", name, &ops.add);
        }
    }
    // Chains: declare new ones first, so that bodies may jump to each other.
    for name in &d.chains {
        if t.chains.contains_key(name) && !w.chains.contains_key(name) {
            let _ = writeln!(out, "add chain {T} {name}");
        }
    }
    for name in &d.chains {
        let Some(rules) = t.chains.get(name) else {
            continue;
        };
        match w.chains.get(name) {
            Some(old) if old == rules => {}
            Some(_) => {
                let _ = writeln!(out, "flush chain {T} {name}");
                chain_rules(&mut out, name, rules);
            }
            None => chain_rules(&mut out, name, rules),
        }
    }
    // Dispatch: drop stale entries, then add new ones.
    for (map, want, have, dirty) in [
        ("from_wl", &t.from_wl, &w.from_wl, &d.from_wl),
        ("to_wl", &t.to_wl, &w.to_wl, &d.to_wl),
    ] {
        let stale = dirty
            .iter()
            .filter(|k| have.contains_key(*k) && want.get(*k) != have.get(*k))
            .map(|k| (k, None));
        map_elements(&mut out, "delete", map, stale);
        let fresh = dirty
            .iter()
            .filter(|k| want.contains_key(*k) && want.get(*k) != have.get(*k))
            .map(|k| (k, want.get(k)));
        map_elements(&mut out, "add", map, fresh);
    }
    // Removals last: nothing refers to them any more. Chains are emptied before any is
    // deleted, since a chain that jumps to another holds a reference to it.
    let gone: Vec<&String> = d
        .chains
        .iter()
        .filter(|n| !t.chains.contains_key(*n) && w.chains.contains_key(*n))
        .collect();
    for name in &gone {
        let _ = writeln!(out, "flush chain {T} {name}");
    }
    for name in &gone {
        let _ = writeln!(out, "delete chain {T} {name}");
    }
    for name in &d.sets {
        if !t.sets.contains_key(name) && w.sets.contains_key(name) {
            let _ = writeln!(out, "delete set {T} {name}");
        }
    }
    out
}
