use std::sync::Arc;

use ipnet::IpNet;
use tabby_calc::{
    Delta, EndpointId, EndpointOut, IpSetKind, IpSetMember, PolicyId, PolicyOut, RuleOut, TierOut,
};
use tabby_model::Kind;
use tabby_model::policy::Action;

use super::names::{self, Direction, Family, SetPart};
use super::{Config, NftTable};
use crate::apply::FakeNft;

pub(super) fn net(s: &str) -> IpNet {
    s.parse().expect("valid")
}

pub(super) fn pid(name: &str) -> PolicyId {
    PolicyId {
        kind: Kind::GlobalNetworkPolicy,
        namespace: String::new(),
        name: name.to_owned(),
    }
}

pub(super) fn allow_from(set: &str) -> RuleOut {
    let mut r = RuleOut {
        index: 0,
        action: Action::Allow,
        ip_version: None,
        protocol: Some(6),
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: Default::default(),
        destination: Default::default(),
    };
    r.source.ip_sets = vec![Arc::from(set)];
    r
}

pub(super) fn policy(name: &str, rules: Vec<RuleOut>) -> Delta {
    Delta::PolicyUpdated(Arc::new(PolicyOut {
        id: pid(name),
        tier: "default".to_owned(),
        ingress: rules,
        egress: vec![],
    }))
}

pub(super) fn endpoint(iface: &str, policies: &[&str]) -> Delta {
    Delta::EndpointUpdated(Arc::new(EndpointOut {
        id: EndpointId {
            namespace: "ns".to_owned(),
            name: iface.to_owned(),
        },
        interface: iface.to_owned(),
        ips: vec![net("10.0.0.1/32")],
        tiers: vec![TierOut {
            name: "default".to_owned(),
            default_action: Action::Deny,
            ingress: policies.iter().map(|p| pid(p)).collect(),
            egress: vec![],
        }],
        profiles: vec![],
        missing_profile: None,
    }))
}

pub(super) fn created(id: &str, members: &[&str]) -> Delta {
    Delta::IpSetCreated {
        id: Arc::from(id),
        kind: IpSetKind::Nets,
        members: members.iter().map(|m| IpSetMember::Net(net(m))).collect(),
    }
}

pub(super) fn members(id: &str, added: &[&str], removed: &[&str]) -> Delta {
    Delta::IpSetMembers {
        id: Arc::from(id),
        added: added.iter().map(|m| IpSetMember::Net(net(m))).collect(),
        removed: removed.iter().map(|m| IpSetMember::Net(net(m))).collect(),
    }
}

pub(super) fn synced(deltas: &[Delta]) -> (NftTable, FakeNft) {
    let mut t = NftTable::new(Config::default());
    let mut nft = FakeNft::default();
    for d in deltas {
        t.apply(d);
    }
    t.sync(&mut nft).expect("fake");
    (t, nft)
}

#[test]
fn nothing_changed_means_no_script() {
    let (mut t, mut nft) = synced(&[created("s:a", &["10.0.0.2/32"])]);
    assert_eq!(t.sync(&mut nft).expect("fake"), None);
    // The same member again changes nothing either.
    t.apply(&members("s:a", &["10.0.0.2/32"], &[]));
    assert_eq!(t.sync(&mut nft).expect("fake"), None);
    assert_eq!(nft.scripts.len(), 1);
}

#[test]
fn a_member_change_writes_only_set_elements() {
    let (mut t, mut nft) = synced(&[
        created("s:a", &["10.0.0.2/32"]),
        policy("p", vec![allow_from("s:a")]),
        endpoint("tb1", &["p"]),
    ]);
    t.apply(&members("s:a", &["10.0.0.3/32"], &["10.0.0.2/32"]));
    let s = t.sync(&mut nft).expect("fake").expect("script");
    let set = names::set_name(&Arc::from("s:a"), SetPart::Hosts, Family::V4);
    assert_eq!(
        s.text,
        format!(
            "delete element inet tabby {set} {{ 10.0.0.2 }}\nadd element inet tabby {set} {{ 10.0.0.3 }}\n"
        )
    );
}

#[test]
fn an_add_and_remove_between_writes_cancel_out() {
    let (mut t, mut nft) = synced(&[created("s:a", &[])]);
    t.apply(&members("s:a", &["10.0.0.3/32"], &[]));
    t.apply(&members("s:a", &[], &["10.0.0.3/32"]));
    let s = t.sync(&mut nft).expect("fake");
    assert!(
        s.as_ref().is_none_or(|s| !s.text.contains("element")),
        "{s:?}"
    );
}

#[test]
fn the_first_network_in_a_set_adds_a_prefix_set_and_rewrites_its_users() {
    let (mut t, mut nft) = synced(&[
        created("s:a", &["10.0.0.2/32"]),
        policy("p", vec![allow_from("s:a")]),
    ]);
    t.apply(&members("s:a", &["192.0.2.0/24", "192.0.2.128/25"], &[]));
    let s = t.sync(&mut nft).expect("fake").expect("script").text;
    let prefixes = names::set_name(&Arc::from("s:a"), SetPart::Prefixes, Family::V4);
    assert!(
        s.contains(&format!(
            "add set inet tabby {prefixes} {{ type ipv4_addr; flags interval;"
        )),
        "{s}"
    );
    // The nested /25 adds nothing and would overlap.
    assert!(
        s.contains(&format!(
            "add element inet tabby {prefixes} {{ 192.0.2.0/24 }}"
        )),
        "{s}"
    );
    let chain = names::policy_chain(&pid("p"), Direction::Ingress);
    assert!(
        s.contains(&format!("flush chain inet tabby {chain}")),
        "{s}"
    );
    assert!(s.contains(&format!("ip saddr @{prefixes}")), "{s}");

    // Removing the outer network surfaces the inner one.
    t.apply(&members("s:a", &[], &["192.0.2.0/24"]));
    let s = t.sync(&mut nft).expect("fake").expect("script").text;
    assert!(
        s.contains(&format!(
            "delete element inet tabby {prefixes} {{ 192.0.2.0/24 }}"
        )),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "add element inet tabby {prefixes} {{ 192.0.2.128/25 }}"
        )),
        "{s}"
    );
}

#[test]
fn a_rule_naming_an_unknown_set_makes_its_policy_drop_everything() {
    let (t, _) = synced(&[policy("p", vec![allow_from("s:nowhere")])]);
    let full = t.full_script();
    let chain = names::policy_chain(&pid("p"), Direction::Ingress);
    let rules: Vec<&str> = full
        .lines()
        .filter(|l| l.starts_with(&format!("add rule inet tabby {chain} ")))
        .collect();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(rules[0].contains("counter drop") && rules[0].contains("fail closed"));
}

#[test]
fn an_unknown_policy_is_a_drop_until_it_arrives() {
    let (mut t, mut nft) = synced(&[created("s:a", &[]), endpoint("tb1", &["p"])]);
    let chain = names::endpoint_chain("tb1", Direction::Ingress);
    assert!(nft.scripts[0].contains("is not known: fail closed"));
    t.apply(&policy("p", vec![allow_from("s:a")]));
    let s = t.sync(&mut nft).expect("fake").expect("script").text;
    assert!(
        s.contains(&format!("flush chain inet tabby {chain}")),
        "{s}"
    );
    assert!(s.contains("jump pi_"), "{s}");
}

#[test]
fn removals_come_after_the_last_reference_is_gone() {
    let (mut t, mut nft) = synced(&[
        created("s:a", &["10.0.0.2/32"]),
        policy("p", vec![allow_from("s:a")]),
        endpoint("tb1", &["p"]),
    ]);
    t.apply(&Delta::EndpointRemoved(EndpointId {
        namespace: "ns".to_owned(),
        name: "tb1".to_owned(),
    }));
    t.apply(&Delta::PolicyRemoved(pid("p")));
    t.apply(&Delta::IpSetRemoved(Arc::from("s:a")));
    let s = t.sync(&mut nft).expect("fake").expect("script").text;
    let pos = |needle: &str| {
        s.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{s}"))
    };
    let map = pos("delete element inet tabby to_wl { \"tb1\" }");
    let flush = pos("flush chain inet tabby tw_tb1");
    let chain = pos("delete chain inet tabby tw_tb1");
    let pchain = pos("delete chain inet tabby pi_");
    let set = pos("delete set inet tabby s4_");
    assert!(
        map < flush && flush < chain && chain < set && pchain < set,
        "{s}"
    );
    assert_eq!(t.counts().nft_chains, 0);
}

#[test]
fn a_failed_write_makes_the_next_one_full() {
    let (mut t, mut nft) = synced(&[created("s:a", &[])]);
    t.apply(&members("s:a", &["10.0.0.3/32"], &[]));
    nft.fail_next = Some("nft exploded".to_owned());
    assert!(t.sync(&mut nft).is_err());
    let s = t.sync(&mut nft).expect("fake").expect("script");
    assert!(s.full);
    assert!(
        s.text
            .starts_with("add table inet tabby\ndelete table inet tabby\n")
    );
    assert!(s.text.contains("10.0.0.3"));
}

#[test]
fn a_set_removed_and_created_again_is_emptied_and_refilled() {
    let (mut t, mut nft) = synced(&[created("s:a", &["10.0.0.2/32"])]);
    t.apply(&Delta::IpSetRemoved(Arc::from("s:a")));
    t.apply(&created("s:a", &["10.0.0.9/32"]));
    let s = t.sync(&mut nft).expect("fake").expect("script").text;
    let set = names::set_name(&Arc::from("s:a"), SetPart::Hosts, Family::V4);
    assert!(
        s.contains(&format!(
            "flush set inet tabby {set}\nadd element inet tabby {set} {{ 10.0.0.9 }}"
        )),
        "{s}"
    );
    assert!(!s.contains("delete set"), "{s}");
}

#[test]
fn names_are_valid_nft_identifiers_and_comments_are_capped() {
    let id = pid(&"x".repeat(300));
    let chain = names::policy_chain(&id, Direction::Egress);
    assert!(chain.starts_with("po_") && chain.len() == 19, "{chain}");
    assert_eq!(
        names::endpoint_chain("tb0123456789a", Direction::Ingress),
        "tw_tb0123456789a"
    );
    assert!(names::endpoint_chain("we.ird-name", Direction::Egress).starts_with("fw_h"));
    let c = names::quoted(&format!("a\"b\\{}", "y".repeat(300)));
    assert!(
        c.len() <= 129 && !c[1..c.len() - 1].contains(['"', '\\']),
        "{c}"
    );
}
