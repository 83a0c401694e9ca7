//! The nfnetlink fast path against the real kernel: a table rendered and loaded with `nft`,
//! element changes written as one batch, and `nft -j list set` must show exactly the elements
//! expected (IPv4 and IPv6, addresses and named ports, adds and deletes in one batch). The
//! kernel's refusals (an absent element to delete, a missing set, a key of the wrong length)
//! must fail the whole batch as `nft` would, and a table whose batch failed is repaired by
//! the full script of the next write.
//!
//! Needs root. Without it the test says it was skipped; under `CI=true` that is a failure.

#[path = "util/deltas.rs"]
#[expect(dead_code, reason = "shared builders; this test needs only some")]
mod deltas;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;

use tabby_calc::{Delta, IpSetMember};
use tabby_dataplane::nfnl::{ElementBatch, ElementKey, ElementOp, NfSetWriter, SetChange};
use tabby_dataplane::nft::names::{Family, SetPart, set_name};
use tabby_dataplane::{Config, NetNs, NftCli, NftError, NftTable};

use deltas::{TCP, UDP, host, named_port_set, set, set_id};

#[expect(
    clippy::print_stdout,
    reason = "a skipped test says so on the test's output"
)]
fn is_root(test: &str) -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "{test}: needs root, and CI=true: not running it is a failure"
        );
        println!("{test}: skipped (needs root)");
    }
    root
}

fn nft(ns: &NetNs, args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    ns.run(move || {
        std::process::Command::new("nft")
            .args(&args)
            .output()
            .expect("run nft")
    })
    .expect("enter namespace")
}

/// The elements of one set as `nft -j` shows them: addresses and prefixes as text,
/// concatenations as `a . b . c`.
fn elements(ns: &NetNs, set: &str) -> BTreeSet<String> {
    let out = nft(ns, &["-j", "list", "set", "inet", "tabby", set]);
    assert!(
        out.status.success(),
        "nft list set {set}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j is JSON");
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    json["nftables"]
        .as_array()
        .expect("nftables array")
        .iter()
        .filter_map(|o| o.get("set"))
        .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
        .map(|e| match &e {
            serde_json::Value::Object(o) if o.contains_key("concat") => o["concat"]
                .as_array()
                .expect("concat list")
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join(" . "),
            serde_json::Value::Object(o) if o.contains_key("prefix") => {
                format!("{}/{}", text(&o["prefix"]["addr"]), o["prefix"]["len"])
            }
            other => text(other),
        })
        .collect()
}

fn want(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn name(id: &str, part: SetPart, f: Family) -> String {
    set_name(&Arc::from(id), part, f)
}

fn members(id: &str, added: &[&str], removed: &[&str]) -> Delta {
    Delta::IpSetMembers {
        id: set_id(id),
        added: added.iter().map(|m| host(m)).collect(),
        removed: removed.iter().map(|m| host(m)).collect(),
    }
}

fn net_port(addr: &str, protocol: u8, port: u16) -> IpSetMember {
    IpSetMember::NetPort {
        addr: addr.parse().expect("valid"),
        protocol,
        port,
    }
}

fn loaded(ns: &NetNs, deltas: &[Delta]) -> (NftTable, NftCli) {
    let mut cli = NftCli::new().in_netns(ns.path());
    let mut table = NftTable::new(Config::default());
    for d in deltas {
        table.apply(d);
    }
    let first = table.sync(&mut cli).expect("full script").expect("written");
    assert!(first.full && !first.netlink);
    (table, cli)
}

#[test]
fn element_batches_write_exactly_the_expected_elements() {
    if !is_root("element_batches_write_exactly_the_expected_elements") {
        return;
    }
    let ns = NetNs::new("tbt-nfset").expect("namespace");
    let (mut table, mut cli) = loaded(
        &ns,
        &[
            set(
                "s:a",
                &[
                    "10.0.0.1/32",
                    "10.0.0.2/32",
                    "fd00::1/128",
                    "fd00::2/128",
                    "192.0.2.0/24",
                ],
            ),
            named_port_set("s:np", &[("10.0.0.1", TCP, 80), ("fd00::1", UDP, 53)]),
        ],
    );
    let s4 = name("s:a", SetPart::Hosts, Family::V4);
    let s6 = name("s:a", SetPart::Hosts, Family::V6);
    let p4 = name("s:a", SetPart::Prefixes, Family::V4);
    let n4 = name("s:np", SetPart::NamedPorts, Family::V4);
    let n6 = name("s:np", SetPart::NamedPorts, Family::V6);
    assert_eq!(elements(&ns, &s4), want(&["10.0.0.1", "10.0.0.2"]));
    assert_eq!(elements(&ns, &n6), want(&["fd00::1 . udp . 53"]));

    // Adds and deletes, both families, addresses and named ports: one batch.
    table.apply(&members(
        "s:a",
        &["10.0.0.3/32", "fd00::3/128"],
        &["10.0.0.1/32", "fd00::2/128"],
    ));
    table.apply(&Delta::IpSetMembers {
        id: set_id("s:np"),
        added: vec![
            net_port("10.0.0.2", TCP, 8080),
            net_port("fd00::2", 132, 9000),
        ],
        removed: vec![net_port("10.0.0.1", TCP, 80)],
    });
    let s = table.sync(&mut cli).expect("batch").expect("written");
    assert!(s.netlink && !s.full, "{s:?}");
    assert_eq!(elements(&ns, &s4), want(&["10.0.0.2", "10.0.0.3"]));
    assert_eq!(elements(&ns, &s6), want(&["fd00::1", "fd00::3"]));
    assert_eq!(elements(&ns, &p4), want(&["192.0.2.0/24"]));
    assert_eq!(elements(&ns, &n4), want(&["10.0.0.2 . tcp . 8080"]));
    assert_eq!(
        elements(&ns, &n6),
        want(&["fd00::1 . udp . 53", "fd00::2 . sctp . 9000"])
    );

    // The socket is kept: a second batch on it.
    table.apply(&members("s:a", &["10.0.0.4/32"], &["10.0.0.2/32"]));
    assert!(
        table
            .sync(&mut cli)
            .expect("batch")
            .expect("written")
            .netlink
    );
    assert_eq!(elements(&ns, &s4), want(&["10.0.0.3", "10.0.0.4"]));

    // A network goes through nft (interval set) and leaves the hash sets alone.
    table.apply(&members("s:a", &["198.51.100.0/24"], &[]));
    assert!(
        !table
            .sync(&mut cli)
            .expect("script")
            .expect("written")
            .netlink
    );
    assert_eq!(
        elements(&ns, &p4),
        want(&["192.0.2.0/24", "198.51.100.0/24"])
    );
    assert_eq!(elements(&ns, &s4), want(&["10.0.0.3", "10.0.0.4"]));
}

fn addr(s: &str) -> ElementKey {
    ElementKey::Addr(s.parse::<IpAddr>().expect("valid"))
}

fn batch(changes: Vec<(&str, ElementOp, Vec<ElementKey>)>) -> ElementBatch {
    ElementBatch {
        table: "tabby".to_owned(),
        changes: changes
            .into_iter()
            .map(|(set, op, keys)| SetChange {
                set: set.to_owned(),
                op,
                keys,
            })
            .collect(),
    }
}

#[test]
fn the_kernel_refuses_bad_batches_whole_as_nft_does() {
    if !is_root("the_kernel_refuses_bad_batches_whole_as_nft_does") {
        return;
    }
    let ns = NetNs::new("tbt-nfset").expect("namespace");
    let _loaded = loaded(&ns, &[set("s:a", &["10.0.0.1/32"])]);
    let s4 = name("s:a", SetPart::Hosts, Family::V4);
    let mut writer = NfSetWriter::in_netns(ns.path());

    // Deleting an absent element fails the batch, and the add before it is not applied.
    let err = writer
        .write(&batch(vec![
            (&s4, ElementOp::Add, vec![addr("10.0.0.50")]),
            (&s4, ElementOp::Delete, vec![addr("10.0.0.99")]),
        ]))
        .expect_err("absent element");
    assert!(
        matches!(&err, NftError::ElementsRejected { op: ElementOp::Delete, errno: 2, set, .. } if *set == s4),
        "{err}"
    );
    assert!(err.to_string().contains(&s4), "{err}");
    assert_eq!(elements(&ns, &s4), want(&["10.0.0.1"]));
    // nft refuses the same.
    let by_nft = nft(
        &ns,
        &["delete", "element", "inet", "tabby", &s4, "{ 10.0.0.99 }"],
    );
    assert!(!by_nft.status.success());
    assert!(String::from_utf8_lossy(&by_nft.stderr).contains("No such file or directory"));

    // Adding an element that is there is fine, as `nft add element`.
    writer
        .write(&batch(vec![(&s4, ElementOp::Add, vec![addr("10.0.0.1")])]))
        .expect("add of a present element");

    // A set that does not exist.
    let err = writer
        .write(&batch(vec![(
            "s4_0000000000000000",
            ElementOp::Add,
            vec![addr("10.0.0.7")],
        )]))
        .expect_err("missing set");
    assert!(
        matches!(&err, NftError::ElementsRejected { errno: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("s4_0000000000000000"), "{err}");

    // A key of the wrong length (an IPv6 address in an IPv4 set).
    let err = writer
        .write(&batch(vec![
            (&s4, ElementOp::Add, vec![addr("10.0.0.8")]),
            (&s4, ElementOp::Add, vec![addr("fd00::8")]),
        ]))
        .expect_err("wrong key length");
    assert!(
        matches!(&err, NftError::ElementsRejected { errno, .. } if *errno != 0),
        "{err}"
    );
    assert_eq!(elements(&ns, &s4), want(&["10.0.0.1"]));

    // The writer recovers after refusals.
    writer
        .write(&batch(vec![(&s4, ElementOp::Add, vec![addr("10.0.0.5")])]))
        .expect("a good batch");
    assert_eq!(elements(&ns, &s4), want(&["10.0.0.1", "10.0.0.5"]));
}

#[test]
fn a_failed_batch_is_repaired_by_the_next_full_script() {
    if !is_root("a_failed_batch_is_repaired_by_the_next_full_script") {
        return;
    }
    let ns = NetNs::new("tbt-nfset").expect("namespace");
    let (mut table, mut cli) = loaded(&ns, &[set("s:a", &["10.0.0.1/32", "10.0.0.2/32"])]);
    let s4 = name("s:a", SetPart::Hosts, Family::V4);
    // Someone else empties the set behind tabby's back.
    let out = nft(&ns, &["flush", "set", "inet", "tabby", &s4]);
    assert!(out.status.success());
    table.apply(&members("s:a", &["10.0.0.3/32"], &["10.0.0.1/32"]));
    let err = table.sync(&mut cli).expect_err("10.0.0.1 is gone");
    assert!(
        matches!(err, NftError::ElementsRejected { errno: 2, .. }),
        "{err}"
    );
    assert!(
        elements(&ns, &s4).is_empty(),
        "nothing of the batch applied"
    );
    let s = table.sync(&mut cli).expect("full script").expect("written");
    assert!(s.full && !s.netlink);
    assert_eq!(elements(&ns, &s4), want(&["10.0.0.2", "10.0.0.3"]));
}
