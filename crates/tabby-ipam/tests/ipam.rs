//! The IPAM over a real SQLite datastore: claiming, borrowing, strict affinity, reservations,
//! pool filters, releases with sequence numbers, `check`, and several processes assigning at
//! once from one file.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::{Command, Stdio};

use tabby_ipam::records::{AFFINITY_KIND, Affinity, BLOCK_KIND, Block, IpamConfig};
use tabby_ipam::{AssignIpRequest, AssignRequest, Ipam, IpamError, Released};
use tabby_model::{LoadOptions, load, stored};
use tabby_store::sqlite::SqliteStore;
use tabby_store::{Datastore, Key};
use tabby_test_util::ScratchDir;

fn apply(store: &dyn Datastore, yaml: &str) {
    for doc in load(yaml, "test", &LoadOptions::default()).expect("valid yaml") {
        let mut r = doc.resource;
        r.apply_defaults();
        let s = stored::encode(&r);
        let key = Key::new(s.kind, s.namespace, s.name);
        store
            .commit(&[tabby_store::Op::Put { key, value: s.json }])
            .expect("write");
    }
}

fn pool(name: &str, cidr: &str, extra: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {name}}}\nspec: {{cidr: {cidr}{extra}}}\n---\n"
    )
}

fn req(handle: &str, node: &str) -> AssignRequest {
    AssignRequest {
        handle: handle.to_owned(),
        node: node.to_owned(),
        family: 4,
        ..AssignRequest::default()
    }
}

fn affinities(store: &dyn Datastore) -> Vec<Affinity> {
    store
        .list(Some(AFFINITY_KIND), None)
        .unwrap()
        .entries
        .iter()
        .map(|e| serde_json::from_str(&e.value).unwrap())
        .collect()
}

fn blocks(store: &dyn Datastore) -> Vec<Block> {
    store
        .list(Some(BLOCK_KIND), None)
        .unwrap()
        .entries
        .iter()
        .map(|e| serde_json::from_str(&e.value).unwrap())
        .collect()
}

fn open(dir: &ScratchDir) -> SqliteStore {
    SqliteStore::open(dir.file("ipam")).expect("open store")
}

#[test]
fn a_node_claims_a_block_fills_it_then_claims_the_next_and_delete_frees_by_handle() {
    let dir = ScratchDir::new("ipam");
    let store = open(&dir);
    apply(&store, &pool("p", "10.10.0.0/24", ", blockSize: 28"));
    let ipam = Ipam::new(&store);
    let mut seen = BTreeSet::new();
    for i in 0..20 {
        let a = ipam.auto_assign(&req(&format!("h{i}"), "n1")).unwrap();
        assert!(seen.insert(a.ip), "{} handed out twice", a.ip);
        assert_eq!(a.pool, "p");
        assert!(!a.borrowed);
    }
    let bs = blocks(&store);
    assert_eq!(bs.len(), 2, "16 addresses per /28: 20 need two blocks");
    assert!(bs.iter().all(|b| b.affinity.as_deref() == Some("n1")));
    assert_eq!(affinities(&store).len(), 2);

    let freed = ipam.release_handle("h3").unwrap();
    assert_eq!(freed.len(), 1);
    assert!(
        ipam.release_handle("h3").unwrap().is_empty(),
        "a second DEL finds nothing"
    );
    assert!(ipam.release_handle("never-assigned").unwrap().is_empty());
    let report = ipam.check().unwrap();
    assert_eq!(report.allocations, 19);
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
    let usage = ipam.usage().unwrap();
    assert_eq!(usage.pools[0].in_use, 19);
    assert_eq!(usage.pools[0].blocks, 2);
    assert_eq!(usage.pools[0].size, 256);
}

#[test]
fn a_full_node_borrows_unless_strict_affinity_and_the_message_says_why() {
    let dir = ScratchDir::new("ipam");
    let store = open(&dir);
    apply(&store, &pool("p", "10.20.0.0/27", ", blockSize: 28"));
    let ipam = Ipam::new(&store);
    ipam.set_config(&IpamConfig {
        strict_affinity: false,
        max_blocks_per_host: 1,
    })
    .unwrap();
    // n2 claims one block; n1 claims the other and fills it.
    let first_n2 = ipam.auto_assign(&req("b0", "n2")).unwrap();
    for i in 0..16 {
        ipam.auto_assign(&req(&format!("a{i}"), "n1")).unwrap();
    }
    let borrowed = ipam.auto_assign(&req("a16", "n1")).unwrap();
    assert!(borrowed.borrowed);
    assert_eq!(borrowed.block, first_n2.block);
    let usage = ipam.usage().unwrap();
    let b = usage
        .blocks
        .iter()
        .find(|b| b.cidr == first_n2.block.to_string())
        .unwrap();
    assert_eq!(b.affinity.as_deref(), Some("n2"));

    ipam.set_config(&IpamConfig {
        strict_affinity: true,
        max_blocks_per_host: 1,
    })
    .unwrap();
    let err = ipam.auto_assign(&req("a17", "n1")).unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("maxBlocksPerHost") && msg.contains("strict affinity"),
        "{msg}"
    );
}

#[test]
fn an_exhausted_pool_fails_and_changes_nothing() {
    let dir = ScratchDir::new("ipam");
    let store = open(&dir);
    apply(&store, &pool("tiny", "10.30.0.0/30", ", blockSize: 30"));
    let ipam = Ipam::new(&store);
    for i in 0..4 {
        ipam.auto_assign(&req(&format!("h{i}"), "n1")).unwrap();
    }
    let before = store.revision().unwrap();
    let err = ipam.auto_assign(&req("h4", "n1")).unwrap_err();
    assert!(
        err.to_string()
            .contains("tiny (10.30.0.0/30) have no free address"),
        "{err}"
    );
    assert_eq!(
        store.revision().unwrap(),
        before,
        "a failed assignment writes nothing"
    );
}

#[test]
fn pools_are_filtered_by_disabled_selectors_uses_and_request() {
    let dir = ScratchDir::new("ipam");
    let store = open(&dir);
    let yaml = [
        pool("off", "10.40.0.0/24", ", disabled: true"),
        pool("rack2", "10.41.0.0/24", ", nodeSelector: \"rack == '2'\""),
        pool("tunnels", "10.42.0.0/24", ", allowedUses: [Tunnel]"),
        pool("manual", "10.43.0.0/24", ", assignmentMode: Manual"),
    ]
    .concat();
    apply(&store, &yaml);
    let ipam = Ipam::new(&store);
    let err = ipam.auto_assign(&req("h", "n1")).unwrap_err();
    let msg = err.to_string();
    for why in [
        "off (10.40.0.0/24): disabled",
        "rack2 (10.41.0.0/24): nodeSelector does not match",
        "tunnels (10.42.0.0/24): allowedUses",
        "manual (10.43.0.0/24): assignmentMode Manual",
    ] {
        assert!(msg.contains(why), "{why:?} missing from {msg}");
    }
    apply(
        &store,
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1, labels: {rack: '2'}}\n",
    );
    let a = ipam.auto_assign(&req("h", "n1")).unwrap();
    assert_eq!(a.pool, "rack2");
    let mut named = req("h2", "n1");
    named.pools = vec!["manual".into()];
    assert_eq!(ipam.auto_assign(&named).unwrap().pool, "manual");
    named.pools = vec!["nope".into()];
    assert!(matches!(
        ipam.auto_assign(&named),
        Err(IpamError::BadPool { .. })
    ));
    let mut v6 = req("h3", "n1");
    v6.family = 6;
    assert!(matches!(
        ipam.auto_assign(&v6),
        Err(IpamError::NoPool { family: 6, .. })
    ));
}

#[test]
fn reservations_and_explicit_addresses() {
    let dir = ScratchDir::new("ipam");
    let store = open(&dir);
    let yaml = pool("p", "10.50.0.0/24", "")
        + "apiVersion: projectcalico.org/v3\nkind: IPReservation\nmetadata: {name: keep}\nspec: {reservedCIDRs: [10.50.0.0/31, 10.50.0.9]}\n";
    apply(&store, &yaml);
    let ipam = Ipam::new(&store);
    let a = ipam.auto_assign(&req("h", "n1")).unwrap();
    assert_eq!(a.block.to_string(), "10.50.0.0/26");
    // The node's hash decides the block; inside it the reserved addresses are skipped.
    let explicit = |ip: &str, handle: &str| {
        ipam.assign_ip(&AssignIpRequest {
            ip: Some(ip.parse().unwrap()),
            handle: handle.to_owned(),
            node: "n1".to_owned(),
            attrs: BTreeMap::new(),
        })
    };
    assert_eq!(a.ip, "10.50.0.2".parse::<IpAddr>().unwrap());
    assert!(matches!(
        explicit("10.50.0.9", "x"),
        Err(IpamError::Reserved { .. })
    ));
    assert!(matches!(
        explicit("10.99.0.1", "x"),
        Err(IpamError::OutsidePools { .. })
    ));
    assert!(matches!(
        explicit("10.50.0.2", "x"),
        Err(IpamError::AlreadyAllocated { handle, .. }) if handle == "h"
    ));
    explicit("10.50.0.200", "x").unwrap();
    explicit("10.50.0.200", "x").expect("the same handle asking again is a retried ADD");
    let info = ipam.lookup("10.50.0.200".parse().unwrap()).unwrap();
    assert_eq!(info.handle.as_deref(), Some("x"));
    assert_eq!(info.block.as_deref(), Some("10.50.0.192/26"));
}

#[test]
fn a_late_release_cannot_free_a_reused_address() {
    let dir = ScratchDir::new("ipam");
    let store = open(&dir);
    apply(&store, &pool("p", "10.60.0.0/30", ", blockSize: 30"));
    let ipam = Ipam::new(&store);
    for i in 0..4 {
        ipam.auto_assign(&req(&format!("h{i}"), "n1")).unwrap();
    }
    let ip: IpAddr = "10.60.0.1".parse().unwrap();
    let stale = ipam.lookup(ip).unwrap().sequence.unwrap();
    assert_eq!(
        ipam.release_ip(ip, Some(stale)).unwrap(),
        Released::Freed {
            handle: "h1".into()
        }
    );
    let again = ipam.auto_assign(&req("h9", "n1")).unwrap();
    assert_eq!(again.ip, ip, "the only free address");
    let late = ipam.release_ip(ip, Some(stale)).unwrap_err();
    assert!(matches!(late, IpamError::BadSequence { .. }), "{late}");
    assert_eq!(ipam.lookup(ip).unwrap().handle.as_deref(), Some("h9"));
    assert_eq!(
        ipam.release_ip("10.60.0.9".parse().unwrap(), None).unwrap(),
        Released::NotAllocated
    );
    assert!(ipam.check().unwrap().conflicts.is_empty());
}

#[test]
fn check_finds_leaks_and_blocks_of_nodes_that_are_gone() {
    let dir = ScratchDir::new("ipam");
    let store = open(&dir);
    apply(&store, &pool("p", "10.70.0.0/24", ""));
    apply(
        &store,
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1}\n",
    );
    let ipam = Ipam::new(&store);
    let mut r = req("live", "n1");
    r.attrs.insert("workloadEndpoint".into(), "ns/live".into());
    let live = ipam.auto_assign(&r).unwrap();
    apply(
        &store,
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: live, namespace: ns}}\nspec: {{node: n1, interfaceName: tb1, ipNetworks: [{}/32]}}\n",
            live.ip
        ),
    );
    let mut r = req("gone", "n1");
    r.attrs.insert("workloadEndpoint".into(), "ns/gone".into());
    let gone = ipam.auto_assign(&r).unwrap();
    ipam.auto_assign(&req("old-node", "n-gone")).unwrap();

    let report = ipam.check().unwrap();
    assert_eq!(report.allocations, 3);
    assert_eq!(report.leaked.len(), 1, "{report:?}");
    assert_eq!(report.leaked[0].ip, gone.ip);
    assert_eq!(report.orphaned_blocks.len(), 1);
    assert_eq!(report.orphaned_blocks[0].1, "n-gone");
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);

    // An allocation made moments ago whose endpoint is not there yet is an ADD in flight:
    // pending, not leaked, until the grace period has passed.
    let mut r = req("in-flight", "n1");
    r.attrs
        .insert("workloadEndpoint".into(), "ns/in-flight".into());
    r.attrs
        .insert(tabby_ipam::ATTR_TIMESTAMP.into(), "1000000".into());
    let in_flight = ipam.auto_assign(&r).unwrap();
    let report = ipam.check_at(1_000_005).unwrap();
    assert_eq!(report.leaked.len(), 1, "{report:?}");
    assert_eq!(report.pending.len(), 1, "{report:?}");
    assert_eq!(report.pending[0].ip, in_flight.ip);
    let later = 1_000_000 + tabby_ipam::LEAK_GRACE.as_secs();
    assert_eq!(ipam.check_at(later).unwrap().leaked.len(), 2);
    ipam.release_handle("in-flight").unwrap();

    ipam.release_ip(gone.ip, Some(report.leaked[0].sequence))
        .unwrap();
    ipam.release_handle("old-node").unwrap();
    assert_eq!(ipam.release_node_blocks("n-gone").unwrap().len(), 1);
    let report = ipam.check().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

const WORKER_ENV: &str = "TABBY_IPAM_TEST_WORKER";

/// What the concurrency test runs in its child processes (the same test, started with
/// [`WORKER_ENV`] set): assigns `count` addresses for one node and prints them.
#[expect(
    clippy::print_stdout,
    reason = "the worker reports to its parent on stdout"
)]
fn ipam_worker(spec: &str) {
    let mut parts = spec.split(',');
    let (db, node, worker, count) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<usize>().unwrap(),
    );
    let store = SqliteStore::open(db).unwrap();
    let ipam = Ipam::new(&store);
    for i in 0..count {
        let a = ipam
            .auto_assign(&req(&format!("w{worker}-{i}"), node))
            .unwrap();
        // On a line of its own: the harness prints the test's name without a newline.
        println!("\nIP {} {}", a.ip, a.block);
    }
}

#[test]
fn several_processes_assign_at_once_and_never_share_an_address_or_a_block() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        ipam_worker(&spec);
        return;
    }
    let dir = ScratchDir::new("ipam");
    let db = dir.file("ipam");
    let store = SqliteStore::open(&db).unwrap();
    // Blocks of 4 so that the nodes claim many blocks while racing.
    apply(&store, &pool("p", "10.80.0.0/22", ", blockSize: 30"));
    let exe = std::env::current_exe().unwrap();
    // All started before any is waited for, so they run at the same time.
    let children: Vec<_> = (0..6)
        .map(|n| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "several_processes_assign_at_once_and_never_share_an_address_or_a_block",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(
                    WORKER_ENV,
                    format!("{},node-{},{n},12", db.display(), n % 3),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    let mut ips = BTreeSet::new();
    let mut total = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "worker failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in text.lines().filter_map(|l| l.strip_prefix("IP ")) {
            let ip: IpAddr = line.split(' ').next().unwrap().parse().unwrap();
            total += 1;
            assert!(ips.insert(ip), "{ip} handed out twice");
        }
    }
    assert_eq!(total, 72);
    let ipam = Ipam::new(&store);
    let report = ipam.check().unwrap();
    assert_eq!(report.allocations, 72);
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
    // Every block has exactly one affinity, to the node the block names.
    let affs = affinities(&store);
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in &affs {
        owners
            .entry(a.cidr.to_string())
            .or_default()
            .push(a.node.clone());
    }
    for (cidr, nodes) in &owners {
        assert_eq!(nodes.len(), 1, "block {cidr} claimed by {nodes:?}");
    }
}

#[test]
fn plans_are_committed_together_or_not_at_all() {
    let dir = ScratchDir::new("ipam");
    let store = open(&dir);
    apply(
        &store,
        &format!(
            "{}{}",
            pool("p4", "10.10.0.0/24", ", blockSize: 28"),
            pool("p6", "fd00:10::/120", ", blockSize: 124")
        ),
    );
    let ipam = Ipam::new(&store);
    // Two plans from the same block reading would each allocate the same first address:
    // writing both would lose one, so nothing is written.
    let first = ipam.plan_auto_assign(&req("h1", "n1")).unwrap();
    let second = ipam.plan_auto_assign(&req("h1", "n1")).unwrap();
    let before = store.revision().unwrap();
    assert!(!ipam.commit_planned(&[first, second], &[]).unwrap());
    assert_eq!(store.revision().unwrap(), before, "nothing written");
    assert!(blocks(&store).is_empty());

    // One address per family: one commit, and the handle counts both.
    let v4 = ipam.plan_auto_assign(&req("h1", "n1")).unwrap();
    let v6 = ipam
        .plan_auto_assign(&AssignRequest {
            family: 6,
            ..req("h1", "n1")
        })
        .unwrap();
    assert!(ipam.commit_planned(&[v4, v6], &[]).unwrap());
    assert_eq!(store.revision().unwrap(), before + 1);
    assert_eq!(blocks(&store).len(), 2);
    let freed = ipam.release_handle("h1").unwrap();
    assert_eq!(freed.len(), 2, "{freed:?}");
    assert!(ipam.check().unwrap().conflicts.is_empty());
}
