//! One IP-set member change applied to the kernel with 2,000 IP sets and 2,000 policy chains
//! loaded (1,000 policies, an ingress and an egress chain each, plus 20 endpoints), in a
//! scratch network namespace. Prints one JSON line per write path: the median and p90 of 101
//! changes (alternately adding and removing one address), wall clock from the delta to the
//! kernel having committed, and the render-only share. `"path":"nfnetlink"` is the element
//! fast path (one nfnetlink batch); `"path":"nft"` the same changes through `nft -f -`.
//!
//! Needs root (it makes a namespace); otherwise it prints a JSON line saying it was skipped.
//! Run with `cargo bench -p tabby-dataplane --bench set_update`.

use std::os::unix::fs::MetadataExt as _;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tabby_calc::{
    Delta, EndpointId, EndpointOut, EntityOut, IpSetKind, IpSetMember, PolicyId, PolicyOut,
    PortRange, RuleOut, TierOut,
};
use tabby_dataplane::nft::names::{Family, SetPart, set_name};
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

/// Times `SAMPLES` changes of `extra` in `s:set-7` written through `nft` (the last one adds
/// it): (total, render-only) per change.
fn measure(
    table: &mut NftTable,
    nft: &mut NftCli,
    netlink: bool,
    extra: IpNet,
) -> (Vec<Duration>, Vec<Duration>) {
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
        let written = table.sync(nft).expect("member change").expect("written");
        total.push(start.elapsed());
        assert_eq!(written.netlink, netlink, "{written:?}");
    }
    total.sort();
    render.sort();
    (total, render)
}

#[expect(clippy::print_stdout, reason = "a benchmark prints its figures")]
fn main() {
    if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        println!(r#"{{"bench":"nft_set_member_change","skipped":"needs root"}}"#);
        return;
    }
    let ns = NetNs::new("tbb-bench").expect("namespace");
    let mut fast = NftCli::new().in_netns(ns.path());
    let mut scripts = NftCli::new().in_netns(ns.path()).scripts_only();
    let mut table = NftTable::new(Config::default());
    for d in load() {
        table.apply(&d);
    }
    let counts = table.counts();
    let t0 = Instant::now();
    table.sync(&mut fast).expect("initial load");
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;

    let set = set_name(&Arc::from("s:set-7"), SetPart::Hosts, Family::V4);
    for (path, nft, netlink, extra) in [
        ("nfnetlink", &mut fast, true, "10.250.0.1"),
        ("nft", &mut scripts, false, "10.250.0.2"),
    ] {
        let net: IpNet = format!("{extra}/32").parse().expect("valid");
        let (total, render) = measure(&mut table, nft, netlink, net);
        // The kernel holds what was written last.
        let listed = ns
            .run(|| {
                Command::new("nft")
                    .args(["list", "set", "inet", "tabby", &set])
                    .output()
                    .expect("nft list set")
            })
            .expect("enter namespace");
        assert!(
            String::from_utf8_lossy(&listed.stdout).contains(extra),
            "{extra} missing from {set}"
        );
        println!(
            r#"{{"bench":"nft_set_member_change","path":"{path}","sets":{},"nft_sets":{},"chains":{},"samples":{SAMPLES},"p50_ms":{:.2},"p90_ms":{:.2},"render_p50_ms":{:.4},"initial_load_ms":{:.0}}}"#,
            counts.ip_sets,
            counts.nft_sets,
            counts.nft_chains,
            percentile(&total, 50),
            percentile(&total, 90),
            percentile(&render, 50),
            load_ms
        );
    }
}
