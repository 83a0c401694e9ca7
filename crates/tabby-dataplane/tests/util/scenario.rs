//! The hand-made scenarios: what the calc engine would send for a few workloads.
//!
//! Three workloads in namespace `lab`, each with profile `kns.lab` (allow all):
//! ```text
//!   a tba 10.65.0.1    no policy
//!   b tbb 10.65.0.2    ingress: tier security [gnp quarantine], tier default [np lab/allow-clients]
//!   c tbc 10.65.0.3    egress:  tier default [np lab/c-egress]
//! quarantine:     ingress 0 Deny tcp from s:quarantined; 1 Pass
//! allow-clients:  ingress 0 Allow tcp from s:clients to 8080; 1 Allow udp from s:clients to 5353
//! c-egress:       egress  0 Deny tcp to 7070; 1 Allow
//! s:clients = {a}, s:quarantined = {c}
//! ```
//! The update moves a out of and c into `s:clients`, empties `s:quarantined`, and adds rule
//! 2 to allow-clients: Allow tcp to 9999 from anyone.

use tabby_calc::{Delta, IcmpMatch, IpSetMember};
use tabby_model::policy::Action;

use super::deltas::*;

pub(crate) const A: (&str, &str, &str) = ("a", "tba", "10.65.0.1");
pub(crate) const B: (&str, &str, &str) = ("b", "tbb", "10.65.0.2");
pub(crate) const C: (&str, &str, &str) = ("c", "tbc", "10.65.0.3");

fn allow_clients(with_9999: bool) -> Delta {
    let mut ingress = vec![
        from_set_to_port(0, Action::Allow, TCP, "s:clients", 8080),
        from_set_to_port(1, Action::Allow, UDP, "s:clients", 5353),
    ];
    if with_9999 {
        let mut r = rule(2, Action::Allow);
        r.protocol = Some(TCP);
        r.destination.ports = ports(&[9999]);
        ingress.push(r);
    }
    policy(np("lab", "allow-clients"), "default", ingress, vec![])
}

pub(crate) fn initial() -> Vec<Delta> {
    let mut quarantine_deny = rule(0, Action::Deny);
    quarantine_deny.protocol = Some(TCP);
    quarantine_deny.source.ip_sets = vec![set_id("s:quarantined")];
    let mut c_deny = rule(0, Action::Deny);
    c_deny.protocol = Some(TCP);
    c_deny.destination.ports = ports(&[7070]);
    vec![
        set("s:clients", &["10.65.0.1/32"]),
        set("s:quarantined", &["10.65.0.3/32"]),
        policy(
            gnp("quarantine"),
            "security",
            vec![quarantine_deny, rule(1, Action::Pass)],
            vec![],
        ),
        allow_clients(false),
        policy(
            np("lab", "c-egress"),
            "default",
            vec![],
            vec![c_deny, rule(1, Action::Allow)],
        ),
        profile(
            "kns.lab",
            vec![rule(0, Action::Allow)],
            vec![rule(0, Action::Allow)],
        ),
        endpoint("lab", A.0, A.1, &["10.65.0.1/32"], vec![], &["kns.lab"]),
        endpoint(
            "lab",
            B.0,
            B.1,
            &["10.65.0.2/32"],
            vec![
                tier("security", vec![gnp("quarantine")], vec![]),
                tier("default", vec![np("lab", "allow-clients")], vec![]),
            ],
            &["kns.lab"],
        ),
        endpoint(
            "lab",
            C.0,
            C.1,
            &["10.65.0.3/32"],
            vec![tier("default", vec![], vec![np("lab", "c-egress")])],
            &["kns.lab"],
        ),
    ]
}

pub(crate) fn update() -> Vec<Delta> {
    vec![
        Delta::IpSetMembers {
            id: set_id("s:clients"),
            added: vec![host("10.65.0.3/32")],
            removed: vec![host("10.65.0.1/32")],
        },
        Delta::IpSetMembers {
            id: set_id("s:quarantined"),
            added: vec![],
            removed: vec![host("10.65.0.3/32")],
        },
        allow_clients(true),
    ]
}

/// Everything else a rule can say: named ports, networks (nested, both families), ICMP, IP
/// version, negations, Log, a Pass-default tier, an unknown policy and a missing profile.
pub(crate) fn rich() -> Vec<Delta> {
    let mut web = rule(0, Action::Allow);
    web.protocol = Some(TCP);
    web.source.ip_sets = vec![set_id("s:frontend")];
    web.destination.ports = ports(&[80, 443]);
    web.destination.named_port_sets = vec![set_id("n:http")];
    let mut log = rule(1, Action::Log);
    log.source.nets = vec![net("192.0.2.0/24"), net("2001:db8::/32")];
    let mut ping = rule(2, Action::Allow);
    ping.protocol = Some(1);
    ping.icmp = Some(IcmpMatch {
        icmp_type: Some(8),
        code: Some(0),
    });
    let mut not_ext = rule(3, Action::Deny);
    not_ext.ip_version = Some(4);
    not_ext.source.not_ip_sets = vec![set_id("s:external")];
    not_ext.destination.not_nets = vec![net("10.0.0.0/8")];
    not_ext.destination.not_ports = vec![tabby_calc::PortRange {
        first: 1,
        last: 1023,
    }];
    let mut pass = rule(0, Action::Pass);
    pass.source.ip_sets = vec![set_id("s:external")];
    let mut no_sctp = rule(0, Action::Deny);
    no_sctp.not_protocol = Some(TCP);
    no_sctp.destination.not_named_port_sets = vec![set_id("n:http")];
    let mut secure_tier = tier("secure", vec![gnp("pass-external")], vec![]);
    secure_tier.default_action = Action::Pass;
    let mut missing = endpoint(
        "shop",
        "lonely",
        "tb0123456789a",
        &["10.65.1.9/32", "fd00:65::9/128"],
        vec![tier("default", vec![np("shop", "gone")], vec![])],
        &["kns.shop"],
    );
    if let Delta::EndpointUpdated(ep) = &mut missing {
        std::sync::Arc::make_mut(ep).missing_profile = Some("kns.nowhere".to_owned());
    }
    vec![
        set(
            "s:frontend",
            &["10.65.1.1/32", "10.65.1.2/32", "fd00:65::1/128"],
        ),
        Delta::IpSetCreated {
            id: set_id("s:external"),
            kind: tabby_calc::IpSetKind::Nets,
            members: vec![
                IpSetMember::Net(net("198.51.100.0/24")),
                // Inside the /24: adds nothing, and nft would refuse the overlap.
                IpSetMember::Net(net("198.51.100.128/25")),
                IpSetMember::Net(net("198.51.100.7/32")),
                IpSetMember::Net(net("2001:db8:1::/48")),
            ],
        },
        named_port_set(
            "n:http",
            &[("10.65.1.3", TCP, 8080), ("fd00:65::3", TCP, 8080)],
        ),
        policy(gnp("pass-external"), "secure", vec![pass], vec![]),
        policy(
            np("shop", "web"),
            "default",
            vec![web, log, ping, not_ext],
            vec![no_sctp],
        ),
        profile(
            "kns.shop",
            vec![rule(0, Action::Allow)],
            vec![rule(0, Action::Pass), rule(1, Action::Allow)],
        ),
        endpoint(
            "shop",
            "web-1",
            "tb9f8e7d6c5b4",
            &["10.65.1.3/32", "fd00:65::3/128"],
            vec![
                secure_tier,
                tier("default", vec![np("shop", "web")], vec![np("shop", "web")]),
            ],
            &["kns.shop"],
        ),
        missing,
    ]
}
