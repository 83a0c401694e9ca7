//! One IP-set member change applied through the real `nft` with 2,000 IP sets and 2,000
//! policy chains loaded (1,000 policies, an ingress and an egress chain each, plus 20
//! endpoints), in a scratch network namespace. Prints one JSON line: the median and p90 of
//! 101 changes (alternately adding and removing one address), wall clock from the delta to
//! `nft` having committed, and the render-only share.
//!
//! Needs root (it makes a namespace); otherwise it prints a JSON line saying it was skipped.
//! Run with `cargo bench -p tabby-dataplane --bench set_update`.

use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tabby_calc::{
    Delta, EndpointId, EndpointOut, EntityOut, IpSetKind, IpSetMember, PolicyId, PolicyOut,
    PortRange, RuleOut, TierOut,
};
use tabby_dataplane::{Config, NetNs, NftCli, NftTable};
use tabby_model::Kind;
use tabby_model::policy::Action;

const SETS: usize = 2_000;
const POLICIES: usize = 1_000;
const SAMPLES: usize = 101;

fn host(i: usize, j: usize) -> IpSetMember {
    let net: IpNet = format!("10.{}.{}.{}/32", 64 + i / 250, i % 250, j + 1)
        .parse()
        .expect("valid");
    IpSetMember::Net(net)
}

fn rule(index: usize, action: Action, set: usize, port: u16) -> RuleOut {
    RuleOut {
        index,
        action,
        ip_version: None,
        protocol: Some(6),
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: EntityOut {
            ip_sets: vec![Arc::from(format!("s:set-{set}"))],
            ..EntityOut::default()
        },
        destination: EntityOut {
            ports: vec![PortRange {
                first: port,
                last: port,
            }],
            ..EntityOut::default()
        },
    }
}

fn pid(i: usize) -> PolicyId {
    PolicyId {
        kind: Kind::GlobalNetworkPolicy,
        namespace: String::new(),
        name: format!("policy-{i}"),
    }
}

fn load() -> Vec<Delta> {
    let mut out = Vec::new();
    for i in 0..SETS {
        out.push(Delta::IpSetCreated {
            id: Arc::from(format!("s:set-{i}")),
            kind: IpSetKind::Nets,
            members: (0..5).map(|j| host(i, j)).collect(),
        });
    }
    for i in 0..POLICIES {
        out.push(Delta::PolicyUpdated(Arc::new(PolicyOut {
            id: pid(i),
            tier: "default".to_owned(),
            ingress: vec![
                rule(0, Action::Allow, 2 * i, 80),
                rule(1, Action::Deny, 2 * i + 1, 22),
            ],
            egress: vec![rule(0, Action::Allow, 2 * i + 1, 443)],
        })));
    }
    for e in 0..20 {
        out.push(Delta::EndpointUpdated(Arc::new(EndpointOut {
            id: EndpointId {
                namespace: "bench".to_owned(),
                name: format!("wl-{e}"),
            },
            interface: format!("tb{e:011x}"),
            ips: vec![format!("10.200.0.{}/32", e + 1).parse().expect("valid")],
            tiers: vec![TierOut {
                name: "default".to_owned(),
                default_action: Action::Deny,
                ingress: (0..50).map(|k| pid(e * 50 + k)).collect(),
                egress: (0..50).map(|k| pid(e * 50 + k)).collect(),
            }],
            profiles: vec![],
            missing_profile: None,
        })));
    }
    out
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    sorted[(sorted.len() - 1) * p / 100].as_secs_f64() * 1e3
}

#[expect(clippy::print_stdout, reason = "a benchmark prints its figures")]
fn main() {
    if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        println!(r#"{{"bench":"nft_set_member_change","skipped":"needs root"}}"#);
        return;
    }
    let ns = NetNs::new("tbb-bench").expect("namespace");
    let mut nft = NftCli::new().in_netns(ns.path());
    let mut table = NftTable::new(Config::default());
    for d in load() {
        table.apply(&d);
    }
    let counts = table.counts();
    let t0 = Instant::now();
    table.sync(&mut nft).expect("initial load");
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;

    let extra: IpNet = "10.250.0.1/32".parse().expect("valid");
    let mut total = Vec::with_capacity(SAMPLES);
    let mut render = Vec::with_capacity(SAMPLES);
    for k in 0..SAMPLES {
        let member = IpSetMember::Net(extra);
        let (added, removed) = if k % 2 == 0 {
            (vec![member], vec![])
        } else {
            (vec![], vec![member])
        };
        let delta = Delta::IpSetMembers {
            id: Arc::from("s:set-7"),
            added,
            removed,
        };
        let start = Instant::now();
        table.apply(&delta);
        let script = table.pending_script().expect("a change");
        render.push(start.elapsed());
        assert!(
            !script.full && script.text.lines().count() == 1,
            "{}",
            script.text
        );
        table.sync(&mut nft).expect("member change");
        total.push(start.elapsed());
    }
    total.sort();
    render.sort();
    println!(
        r#"{{"bench":"nft_set_member_change","sets":{},"nft_sets":{},"chains":{},"samples":{SAMPLES},"p50_ms":{:.2},"p90_ms":{:.2},"render_p50_ms":{:.4},"initial_load_ms":{:.0}}}"#,
        counts.ip_sets,
        counts.nft_sets,
        counts.nft_chains,
        percentile(&total, 50),
        percentile(&total, 90),
        percentile(&render, 50),
        load_ms
    );
}
