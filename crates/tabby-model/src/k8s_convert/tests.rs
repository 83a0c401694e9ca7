use serde_json::{Value, json};

use super::*;
use crate::Resource;
use crate::selector::Selector;

const K8S: &str = "projectcalico.org/orchestrator == 'k8s'";

fn knp(spec: Value) -> Object<K8sNetworkPolicySpec> {
    serde_json::from_value(json!({
        "metadata": {
            "name": "web",
            "namespace": "prod",
            "labels": {"team": "a"},
            "annotations": {"note": "x"},
        },
        "spec": spec,
    }))
    .expect("test policy must deserialize")
}

fn rules(v: Value) -> Vec<Rule> {
    serde_json::from_value(v).expect("expected rules must deserialize")
}

fn sel(v: Value) -> LabelSelector {
    serde_json::from_value(v).expect("test selector must deserialize")
}

fn assert_parses(s: &str) {
    if let Err(e) = Selector::parse(s) {
        panic!("selector {s:?} must parse: {e}");
    }
}

/// Converts and checks that every selector produced parses in tabby's selector language.
fn convert_ok(spec: Value) -> PolicySpec {
    let out = convert(&knp(spec)).expect("policy must convert");
    let s = out.spec;
    assert_parses(
        s.selector
            .as_deref()
            .expect("a converted policy has a selector"),
    );
    for r in s.ingress.iter().chain(&s.egress) {
        for e in [&r.source, &r.destination].into_iter().flatten() {
            if let Some(x) = &e.selector {
                assert_parses(x);
            }
            if let Some(x) = &e.namespace_selector {
                assert_parses(x);
            }
        }
    }
    s
}

fn convert_err(spec: Value) -> ConvertError {
    convert(&knp(spec)).expect_err("policy must be refused")
}

// ----- policy level -----

#[test]
fn result_is_named_like_the_input_in_the_default_tier_at_order_1000() {
    let out = convert(&knp(json!({"podSelector": {}}))).expect("policy must convert");
    assert_eq!(out.metadata.name, "web");
    assert_eq!(out.metadata.namespace.as_deref(), Some("prod"));
    assert!(out.metadata.labels.is_empty(), "labels are not copied");
    assert!(
        out.metadata.annotations.is_empty(),
        "annotations are not copied"
    );
    assert_eq!(out.spec.tier.as_deref(), Some("default"));
    assert_eq!(out.spec.order, Some(1000.0));
    assert_eq!(out.status, None);
}

#[test]
fn empty_pod_selector_selects_only_kubernetes_pods() {
    let s = convert_ok(json!({"podSelector": {}}));
    assert_eq!(s.selector.as_deref(), Some(K8S));
}

#[test]
fn pod_selector_terms_follow_the_orchestrator_term() {
    let s = convert_ok(json!({"podSelector": {"matchLabels": {"app": "web"}}}));
    assert_eq!(
        s.selector.as_deref(),
        Some("projectcalico.org/orchestrator == 'k8s' && app == 'web'")
    );
}

#[test]
fn match_labels_become_equalities_with_sorted_keys() {
    let s = sel(json!({"matchLabels": {"tier": "db", "app": "web", "Zone": "a"}}));
    assert_eq!(
        label_selector_to_calico(&s),
        "Zone == 'a' && app == 'web' && tier == 'db'"
    );
}

#[test]
fn each_match_expression_operator_has_calicos_spelling() {
    let s = sel(json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "staging"]},
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
            {"key": "owner", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }));
    let out = label_selector_to_calico(&s);
    assert_eq!(
        out,
        "app == 'web' && env in { 'prod', 'staging' } && tier not in { 'db' } \
         && has(owner) && ! has(legacy)"
    );
    assert_parses(&out);
}

#[test]
fn empty_label_selector_is_the_empty_string() {
    assert_eq!(label_selector_to_calico(&LabelSelector::default()), "");
}

#[test]
fn unknown_operator_is_skipped_by_the_selector_function_as_calico_does() {
    let s = sel(json!({"matchExpressions": [
        {"key": "a", "operator": "Gt", "values": ["1"]},
        {"key": "b", "operator": "Exists"},
    ]}));
    assert_eq!(label_selector_to_calico(&s), "has(b)");
}

// ----- policy types -----

#[test]
fn absent_egress_defaults_types_to_ingress_only() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{}]}));
    assert_eq!(s.types, vec![PolicyType::Ingress]);
    let s = convert_ok(json!({"podSelector": {}}));
    assert_eq!(s.types, vec![PolicyType::Ingress]);
}

#[test]
fn present_egress_defaults_types_to_both_even_when_empty() {
    let s = convert_ok(json!({"podSelector": {}, "egress": []}));
    assert_eq!(s.types, vec![PolicyType::Ingress, PolicyType::Egress]);
    let s = convert_ok(json!({"podSelector": {}, "egress": [{}]}));
    assert_eq!(s.types, vec![PolicyType::Ingress, PolicyType::Egress]);
}

#[test]
fn explicit_types_are_kept_in_calicos_order() {
    let s = convert_ok(json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}));
    assert_eq!(s.types, vec![PolicyType::Egress]);
    // Calico keeps the rules of a direction the types leave out; they never apply.
    assert_eq!(s.ingress.len(), 1);
    let s = convert_ok(json!({"podSelector": {}, "policyTypes": ["Egress", "Ingress", "Egress"]}));
    assert_eq!(s.types, vec![PolicyType::Ingress, PolicyType::Egress]);
}

#[test]
fn explicitly_empty_types_are_defaulted_like_absent_ones() {
    let s = convert_ok(json!({"podSelector": {}, "policyTypes": [], "egress": []}));
    assert_eq!(s.types, vec![PolicyType::Ingress, PolicyType::Egress]);
}

// ----- rule lists -----

#[test]
fn empty_absent_and_allow_all_rule_lists_stay_distinct() {
    let deny = convert_ok(json!({"podSelector": {}, "ingress": []}));
    assert!(deny.ingress.is_empty());
    assert_eq!(deny.types, vec![PolicyType::Ingress]);

    let absent = convert_ok(json!({"podSelector": {}, "policyTypes": ["Ingress"]}));
    assert!(absent.ingress.is_empty());

    let allow = convert_ok(json!({"podSelector": {}, "ingress": [{}], "egress": [{}]}));
    assert_eq!(allow.ingress, rules(json!([{"action": "Allow"}])));
    assert_eq!(allow.egress, rules(json!([{"action": "Allow"}])));
}

#[test]
fn empty_peer_and_port_lists_mean_any() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{"from": [], "ports": []}]}));
    assert_eq!(s.ingress, rules(json!([{"action": "Allow"}])));
}

#[test]
fn each_k8s_rule_adds_its_own_calico_rules_in_order() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [
        {"ports": [{"port": 80}]},
        {"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]},
    ]}));
    assert_eq!(
        s.ingress,
        rules(json!([
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}},
            {"action": "Allow", "source": {"nets": ["192.0.2.0/24"]}},
        ]))
    );
}

// ----- peers -----

#[test]
fn pod_selector_peer_has_no_namespace_selector() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"app": "api"}}}, {"podSelector": {}}]},
    ]}));
    assert_eq!(
        s.ingress,
        rules(json!([
            {"action": "Allow", "source": {
                "selector": "projectcalico.org/orchestrator == 'k8s' && app == 'api'"}},
            {"action": "Allow", "source": {"selector": K8S}},
        ]))
    );
}

#[test]
fn empty_namespace_selector_peer_means_every_namespace() {
    let s =
        convert_ok(json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}));
    assert_eq!(
        s.ingress,
        rules(json!([
            {"action": "Allow", "source": {"selector": K8S, "namespaceSelector": "all()"}},
        ]))
    );
}

#[test]
fn namespace_selector_peer_keeps_its_terms_without_the_orchestrator_term() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]},
    ]}));
    assert_eq!(
        s.ingress,
        rules(json!([
            {"action": "Allow", "source": {
                "selector": K8S,
                "namespaceSelector": "kubernetes.io/metadata.name == 'y'"}},
        ]))
    );
}

#[test]
fn peer_with_both_selectors_combines_them() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "api"}}, "namespaceSelector": {}},
        {"podSelector": {}, "namespaceSelector": {"matchLabels": {"team": "a"}}},
    ]}]}));
    assert_eq!(
        s.ingress,
        rules(json!([
            {"action": "Allow", "source": {
                "selector": "projectcalico.org/orchestrator == 'k8s' && app == 'api'",
                "namespaceSelector": "all()"}},
            {"action": "Allow", "source": {"selector": K8S, "namespaceSelector": "team == 'a'"}},
        ]))
    );
}

#[test]
fn ip_block_masks_host_bits_in_cidr_and_except() {
    let s = convert_ok(
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {
            "cidr": "192.168.242.213/16",
            "except": ["192.168.242.213/24", "192.168.7.7/32"],
        }}]}]}),
    );
    assert_eq!(
        s.ingress,
        rules(json!([{"action": "Allow", "source": {
            "nets": ["192.168.0.0/16"],
            "notNets": ["192.168.242.0/24", "192.168.7.7/32"],
        }}]))
    );
}

#[test]
fn ipv6_ip_block_is_masked_too() {
    let s = convert_ok(json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {
        "cidr": "2001:db8::1/32", "except": ["2001:db8:0:1::5/64"],
    }}]}]}));
    assert_eq!(
        s.egress,
        rules(json!([{"action": "Allow", "destination": {
            "nets": ["2001:db8::/32"], "notNets": ["2001:db8:0:1::/64"],
        }}]))
    );
}

// ----- ports -----

#[test]
fn port_entry_without_protocol_or_port_means_tcp_any_port() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{"ports": [{}]}]}));
    assert_eq!(
        s.ingress,
        rules(json!([{"action": "Allow", "protocol": "TCP"}]))
    );
}

#[test]
fn port_without_protocol_is_tcp() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{"ports": [{"port": 443}]}]}));
    assert_eq!(
        s.ingress,
        rules(json!([{"action": "Allow", "protocol": "TCP", "destination": {"ports": [443]}}]))
    );
}

#[test]
fn mixed_protocols_give_one_rule_each_sorted_by_protocol() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{"ports": [
        {"protocol": "UDP", "port": 53},
        {"protocol": "TCP", "port": 53},
        {"port": 8080},
        {"protocol": "SCTP", "port": 9000},
    ]}]}));
    assert_eq!(
        s.ingress,
        rules(json!([
            {"action": "Allow", "protocol": "SCTP", "destination": {"ports": [9000]}},
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [53, 8080]}},
            {"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}},
        ]))
    );
}

#[test]
fn named_ports_are_strings_and_stay_in_their_protocol() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{"ports": [
        {"port": "serve-80-tcp"},
        {"protocol": "UDP", "port": "dns"},
    ]}]}));
    assert_eq!(
        s.ingress,
        rules(json!([
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["serve-80-tcp"]}},
            {"action": "Allow", "protocol": "UDP", "destination": {"ports": ["dns"]}},
        ]))
    );
}

#[test]
fn end_port_makes_a_range_string() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{"ports": [
        {"protocol": "TCP", "port": 32000, "endPort": 32768},
    ]}]}));
    assert_eq!(
        s.ingress,
        rules(json!([
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["32000:32768"]}},
        ]))
    );
}

#[test]
fn end_port_equal_to_port_is_written_as_the_number() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{"ports": [
        {"port": 80, "endPort": 80},
    ]}]}));
    assert_eq!(
        s.ingress,
        rules(json!([{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}]))
    );
}

#[test]
fn adjacent_and_overlapping_ports_are_merged_after_named_ones() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{"ports": [
        {"port": 82},
        {"port": 80},
        {"port": "http"},
        {"port": 81},
        {"port": 9090},
        {"port": 8000, "endPort": 8100},
        {"port": 8050},
    ]}]}));
    assert_eq!(
        s.ingress,
        rules(
            json!([{"action": "Allow", "protocol": "TCP", "destination": {
                "ports": ["http", "80:82", "8000:8100", 9090],
            }}])
        )
    );
}

#[test]
fn one_numbered_port_with_named_ones_keeps_the_given_order() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{"ports": [
        {"port": 80},
        {"port": "http"},
    ]}]}));
    assert_eq!(
        s.ingress,
        rules(
            json!([{"action": "Allow", "protocol": "TCP", "destination": {
                "ports": [80, "http"],
            }}])
        )
    );
}

#[test]
fn protocol_only_entry_absorbs_the_ports_of_that_protocol() {
    for ports in [
        json!([{"protocol": "UDP", "port": 53}, {"protocol": "UDP"}, {"port": 80}]),
        json!([{"protocol": "UDP"}, {"protocol": "UDP", "port": 53}, {"port": 80}]),
    ] {
        let s = convert_ok(json!({"podSelector": {}, "ingress": [{"ports": ports}]}));
        assert_eq!(
            s.ingress,
            rules(json!([
                {"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}},
                {"action": "Allow", "protocol": "UDP"},
            ]))
        );
    }
}

#[test]
fn rules_go_by_protocol_then_by_peer() {
    let s = convert_ok(json!({"podSelector": {}, "ingress": [{
        "from": [
            {"podSelector": {"matchLabels": {"app": "a"}}},
            {"ipBlock": {"cidr": "198.51.100.0/24"}},
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }]}));
    let a = "projectcalico.org/orchestrator == 'k8s' && app == 'a'";
    assert_eq!(
        s.ingress,
        rules(json!([
            {"action": "Allow", "protocol": "TCP", "source": {"selector": a},
             "destination": {"ports": [53]}},
            {"action": "Allow", "protocol": "TCP", "source": {"nets": ["198.51.100.0/24"]},
             "destination": {"ports": [53]}},
            {"action": "Allow", "protocol": "UDP", "source": {"selector": a},
             "destination": {"ports": [53]}},
            {"action": "Allow", "protocol": "UDP", "source": {"nets": ["198.51.100.0/24"]},
             "destination": {"ports": [53]}},
        ]))
    );
}

#[test]
fn egress_rules_put_the_peer_with_the_ports_in_destination() {
    let s = convert_ok(json!({"podSelector": {}, "egress": [{
        "to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {}}],
        "ports": [{"port": 5432}],
    }]}));
    assert_eq!(
        s.egress,
        rules(
            json!([{"action": "Allow", "protocol": "TCP", "destination": {
                "selector": K8S, "namespaceSelector": "ns == 'y'", "ports": [5432],
            }}])
        )
    );
    assert!(s.ingress.is_empty());
}

// ----- cases shaped like the upstream e2e suite -----

#[test]
fn default_deny_all_has_both_types_and_no_rules() {
    let s = convert_ok(json!({
        "podSelector": {}, "ingress": [], "egress": [], "policyTypes": ["Ingress", "Egress"],
    }));
    assert_eq!(s.types, vec![PolicyType::Ingress, PolicyType::Egress]);
    assert!(s.ingress.is_empty() && s.egress.is_empty());
}

#[test]
fn ingress_from_other_namespace_or_own_pod() {
    let s = convert_ok(json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [
            {"namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]},
            ]}},
            {"podSelector": {"matchLabels": {"pod": "b"}}},
        ]}],
        "policyTypes": ["Ingress"],
    }));
    assert_eq!(
        s.selector.as_deref(),
        Some("projectcalico.org/orchestrator == 'k8s' && pod == 'a'")
    );
    assert_eq!(
        s.ingress,
        rules(json!([
            {"action": "Allow", "source": {
                "selector": K8S,
                "namespaceSelector": "kubernetes.io/metadata.name not in { 'x' }"}},
            {"action": "Allow", "source": {
                "selector": "projectcalico.org/orchestrator == 'k8s' && pod == 'b'"}},
        ]))
    );
}

#[test]
fn ingress_from_namespace_on_one_named_port() {
    let s = convert_ok(json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
            "ports": [{"protocol": "TCP", "port": "serve-80-tcp"}],
        }],
        "policyTypes": ["Ingress"],
    }));
    assert_eq!(
        s.ingress,
        rules(json!([{
            "action": "Allow", "protocol": "TCP",
            "source": {"selector": K8S, "namespaceSelector": "kubernetes.io/metadata.name == 'y'"},
            "destination": {"ports": ["serve-80-tcp"]},
        }]))
    );
}

#[test]
fn egress_to_cidr_with_except() {
    let s = convert_ok(json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/4", "except": ["10.244.1.20/32"]}}]}],
        "policyTypes": ["Egress"],
    }));
    assert_eq!(s.types, vec![PolicyType::Egress]);
    assert_eq!(
        s.egress,
        rules(json!([{"action": "Allow", "destination": {
            "nets": ["0.0.0.0/4"], "notNets": ["10.244.1.20/32"],
        }}]))
    );
}

#[test]
fn sctp_any_port_allows_only_sctp() {
    let s = convert_ok(json!({
        "podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP"}]}], "policyTypes": ["Ingress"],
    }));
    assert_eq!(
        s.ingress,
        rules(json!([{"action": "Allow", "protocol": "SCTP"}]))
    );
}

#[test]
fn converted_policy_passes_calico_validation() {
    let np = knp(json!({
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]},
        "ingress": [{
            "from": [{"podSelector": {}, "namespaceSelector": {}}, {"ipBlock": {"cidr": "192.0.2.9/24"}}],
            "ports": [{"port": 80}, {"protocol": "UDP", "port": "dns"}, {"port": 81, "endPort": 90}],
        }],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}],
    }));
    let out = convert(&np).expect("policy must convert");
    let (errors, _) = Resource::NetworkPolicy(out).check();
    assert_eq!(errors, Vec::new());
}

// ----- errors -----

#[test]
fn bad_cidr_names_its_field_path() {
    let e = convert_err(json!({"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {}},
        {"ipBlock": {"cidr": "10.0.0.300/8"}},
    ]}]}));
    assert_eq!(e.path(), "spec.ingress[0].from[1].ipBlock.cidr");
    assert_eq!(
        e.to_string(),
        "spec.ingress[0].from[1].ipBlock.cidr: \"10.0.0.300/8\" is not a valid CIDR"
    );
}

#[test]
fn bare_address_is_not_a_cidr() {
    let e = convert_err(json!({"podSelector": {}, "egress": [{"to": [
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.2.3"]}},
    ]}]}));
    assert_eq!(e.path(), "spec.egress[0].to[0].ipBlock.except[0]");
}

#[test]
fn unknown_protocol_names_its_field_path() {
    let e = convert_err(json!({"podSelector": {}, "egress": [{"ports": [
        {"port": 80}, {"protocol": "ICMP"},
    ]}]}));
    assert_eq!(
        e,
        ConvertError::UnknownProtocol {
            path: "spec.egress[0].ports[1].protocol".into(),
            protocol: "ICMP".into(),
        }
    );
    assert_eq!(
        e.to_string(),
        "spec.egress[0].ports[1].protocol: unknown protocol \"ICMP\": use TCP, UDP or SCTP"
    );
}

#[test]
fn unknown_operator_names_its_field_path() {
    let e = convert_err(json!({"podSelector": {"matchExpressions": [
        {"key": "a", "operator": "Exists"},
        {"key": "b", "operator": "Gt", "values": ["1"]},
    ]}}));
    assert_eq!(
        e.to_string(),
        "spec.podSelector.matchExpressions[1].operator: \"Gt\" is not one of In, NotIn, Exists, \
         DoesNotExist"
    );
    let e = convert_err(json!({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}},
    ]}]}));
    assert_eq!(
        e.path(),
        "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].operator"
    );
}

#[test]
fn selectors_kubernetes_would_refuse_are_refused() {
    let e = convert_err(json!({"podSelector": {"matchExpressions": [
        {"key": "a", "operator": "In", "values": []},
    ]}}));
    assert_eq!(e.path(), "spec.podSelector.matchExpressions[0].values");
    let e = convert_err(json!({"podSelector": {"matchLabels": {"app": "it's"}}}));
    assert_eq!(e.path(), "spec.podSelector.matchLabels");
    let e = convert_err(json!({"podSelector": {}, "egress": [{"to": [
        {"podSelector": {"matchExpressions": [{"key": "bad key", "operator": "Exists"}]}},
    ]}]}));
    assert_eq!(
        e.path(),
        "spec.egress[0].to[0].podSelector.matchExpressions[0].key"
    );
}

#[test]
fn bad_ports_name_their_field_path() {
    let cases = [
        (
            json!({"port": "http", "endPort": 90}),
            "spec.ingress[0].ports[0].endPort",
        ),
        (json!({"endPort": 90}), "spec.ingress[0].ports[0].endPort"),
        (
            json!({"port": 90, "endPort": 80}),
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            json!({"port": 90, "endPort": 70000}),
            "spec.ingress[0].ports[0].endPort",
        ),
        (json!({"port": 0}), "spec.ingress[0].ports[0].port"),
        (json!({"port": 70000}), "spec.ingress[0].ports[0].port"),
        (json!({"port": "80:90"}), "spec.ingress[0].ports[0].port"),
        (
            json!({"port": "Not_A_Name"}),
            "spec.ingress[0].ports[0].port",
        ),
    ];
    for (port, path) in cases {
        let e = convert_err(json!({"podSelector": {}, "ingress": [{"ports": [port]}]}));
        assert!(matches!(e, ConvertError::InvalidPort { .. }), "{e}");
        assert_eq!(e.path(), path, "{e}");
    }
}

#[test]
fn malformed_peers_are_refused() {
    let e = convert_err(json!({"podSelector": {}, "ingress": [{"from": [{}]}]}));
    assert_eq!(
        e.to_string(),
        "spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock"
    );
    let e = convert_err(json!({"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}},
    ]}]}));
    assert_eq!(e.path(), "spec.ingress[0].from[0]");
}

#[test]
fn unknown_policy_type_names_its_field_path() {
    let e = convert_err(json!({"podSelector": {}, "policyTypes": ["Ingress", "ingress"]}));
    assert_eq!(
        e.to_string(),
        "spec.policyTypes[1]: \"ingress\" is not one of Ingress, Egress"
    );
}
