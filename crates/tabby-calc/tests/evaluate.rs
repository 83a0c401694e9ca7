//! The reference evaluator on Calico semantics: tiers, order, Pass, Log, profiles, network
//! sets, staged policies and fail-closed handling; plus the unit traffic cases of the shared
//! Kubernetes NetworkPolicy vectors (traffic from outside the cluster included).

use std::net::IpAddr;

use serde_json::{Value, json};
use tabby_calc::{Cluster, Decision, Peer, Query, evaluate};
use tabby_model::values::Protocol;
use tabby_model::{LoadOptions, Resource, load};
use tabby_test_util::conformance_dir;

const PODS: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: shop, labels: {team: shop}}}
- {apiVersion: v1, kind: Namespace, metadata: {name: ops, labels: {team: ops}}}
- apiVersion: v1
  kind: Pod
  metadata: {name: web, namespace: shop, labels: {app: web}}
  spec: {containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]}
  status: {podIP: 10.65.0.10}
- apiVersion: v1
  kind: Pod
  metadata: {name: db, namespace: shop, labels: {app: db}}
  spec: {containers: [{name: c, ports: [{containerPort: 5432, name: pg}]}]}
  status: {podIP: 10.65.0.20}
- apiVersion: v1
  kind: Pod
  metadata: {name: prom, namespace: ops, labels: {app: prometheus}}
  spec: {serviceAccountName: scraper, containers: [{name: c}]}
  status: {podIP: 10.65.1.10}
"#;

fn cluster(extra: &str) -> Cluster {
    let text = format!("{PODS}---\n{extra}");
    let resources: Vec<Resource> = load(&text, "test", &LoadOptions::default())
        .expect("test input must load")
        .into_iter()
        .map(|l| l.resource)
        .collect();
    Cluster::from_resources(&resources)
}

fn tcp(port: u16) -> Query {
    Query {
        protocol: Protocol::Tcp,
        port: Some(port),
        source_port: None,
        icmp: None,
    }
}

fn check(c: &Cluster, from: &str, to: &str, port: u16) -> tabby_calc::Verdict {
    let peer = |n: &str| match n.parse::<IpAddr>() {
        Ok(ip) => Peer::External(ip),
        Err(_) => Peer::Endpoint(c.endpoint(n).unwrap_or_else(|| panic!("no endpoint {n}"))),
    };
    evaluate(c, peer(from), peer(to), &tcp(port))
}

fn allowed(c: &Cluster, from: &str, to: &str, port: u16) -> bool {
    check(c, from, to, port).allowed()
}

#[test]
fn no_policy_means_namespace_profiles_allow() {
    let c = cluster("");
    let v = check(&c, "shop/web", "shop/db", 5432);
    assert!(v.allowed());
    assert_eq!(
        v.ingress.decision,
        Decision::AllowedByProfile {
            profile: "kns.shop".into(),
            rule: 0
        }
    );
}

const TIERS: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pass-shop}
spec:
  tier: security
  order: 10
  namespaceSelector: team == 'shop'
  ingress: [{action: Pass, source: {namespaceSelector: team == 'shop'}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-rest}
spec:
  tier: security
  order: 20
  namespaceSelector: team == 'shop'
  ingress: [{action: Log}, {action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: shop}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [pg]}}]
"#;

#[test]
fn earlier_tiers_decide_and_pass_hands_on() {
    let c = cluster(TIERS);
    // From outside the namespace: the security tier denies, whatever the default tier says.
    let v = check(&c, "ops/prom", "shop/db", 5432);
    assert!(!v.allowed());
    let Decision::DeniedByRule(r) = &v.ingress.decision else {
        panic!("{v:?}")
    };
    assert_eq!(
        (r.tier.as_str(), r.policy.as_str(), r.rule),
        ("security", "GlobalNetworkPolicy \"deny-rest\"", 1)
    );
    assert_eq!(
        v.ingress.logged.len(),
        1,
        "the Log rule before the Deny is reported"
    );
    // From inside: passed on to the default tier, where the named port decides.
    let v = check(&c, "shop/web", "shop/db", 5432);
    assert!(v.allowed(), "{v:?}");
    assert_eq!(v.ingress.passed, vec!["security".to_owned()]);
    assert!(
        !allowed(&c, "shop/web", "shop/db", 5433),
        "named port pg is 5432 only"
    );
    // Selected in the default tier, nothing matched: the tier default denies.
    let v = check(&c, "shop/db", "shop/db", 5432);
    assert!(
        matches!(v.ingress.decision, Decision::DeniedByTierDefault { ref tier, .. } if tier == "default"),
        "{v:?}"
    );
}

#[test]
fn order_then_name_decides_within_a_tier() {
    let deny = |name: &str, order: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\n\
             spec: {{{order} selector: app == 'db', ingress: [{{action: Deny}}]}}\n---\n"
        )
    };
    let allow = |name: &str, order: &str| deny(name, order).replace("Deny", "Allow");
    // Lower order first.
    let c = cluster(&format!(
        "{}{}",
        allow("b", "order: 1,"),
        deny("a", "order: 2,")
    ));
    assert!(allowed(&c, "shop/web", "shop/db", 1));
    // Same order: by name.
    let c = cluster(&format!(
        "{}{}",
        allow("b", "order: 1,"),
        deny("a", "order: 1,")
    ));
    assert!(!allowed(&c, "shop/web", "shop/db", 1));
    // No order sorts last.
    let c = cluster(&format!("{}{}", allow("b", ""), deny("a", "order: 5,")));
    assert!(!allowed(&c, "shop/web", "shop/db", 1));
}

#[test]
fn egress_and_ingress_must_both_allow() {
    let c = cluster(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: web-egress}\n\
         spec: {selector: app == 'web', types: [Egress], egress: [{action: Allow, destination: {nets: [10.65.0.0/24]}}]}\n",
    );
    assert!(allowed(&c, "shop/web", "shop/db", 5432));
    let v = check(&c, "shop/web", "ops/prom", 80);
    assert!(!v.allowed());
    assert!(!v.egress.decision.allowed() && v.ingress.decision.allowed());
}

#[test]
fn network_sets_are_selectable_by_label() {
    let c = cluster(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: bad, labels: {feed: bad}}\n\
         spec: {nets: [198.51.100.0/24]}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: block}\n\
         spec: {ingress: [{action: Deny, source: {selector: feed == 'bad'}}, {action: Allow}]}\n",
    );
    assert!(!allowed(&c, "198.51.100.7", "shop/web", 8080));
    assert!(allowed(&c, "203.0.113.7", "shop/web", 8080));
}

#[test]
fn service_accounts_match_by_name() {
    let c = cluster(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: scrape, namespace: shop}\n\
         spec: {selector: all(), ingress: [{action: Allow, source: {serviceAccounts: {names: [scraper]}, namespaceSelector: all()}}]}\n",
    );
    assert!(allowed(&c, "ops/prom", "shop/web", 8080));
    assert!(!allowed(&c, "shop/db", "shop/web", 8080));
}

#[test]
fn staged_policies_are_never_enforced() {
    let c = cluster(
        "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: s}\n\
         spec: {ingress: [{action: Deny}]}\n",
    );
    assert!(allowed(&c, "shop/web", "shop/db", 5432));
}

#[test]
fn a_missing_tier_fails_closed() {
    let c = cluster(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: orphan}\n\
         spec: {tier: nowhere, selector: app == 'db', ingress: [{action: Log}]}\n",
    );
    let v = check(&c, "shop/web", "shop/db", 5432);
    assert!(
        matches!(v.ingress.decision, Decision::DeniedByTierDefault { ref tier, .. } if tier == "nowhere"),
        "{v:?}"
    );
    assert!(
        c.notes.iter().any(|n| n.contains("does not exist")),
        "{:?}",
        c.notes
    );
}

#[test]
fn a_missing_profile_fails_closed() {
    let c = cluster(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: node1-k8s-lone-eth0, namespace: shop}\n\
         spec: {node: node1, pod: lone, interfaceName: tb0123456789a, ipNetworks: [10.65.0.99/32], profiles: [kns.nowhere]}\n",
    );
    let v = check(&c, "shop/web", "shop/lone", 80);
    assert_eq!(
        v.ingress.decision,
        Decision::DeniedMissingProfile {
            profile: "kns.nowhere".into()
        }
    );
}

#[test]
fn a_policy_with_a_broken_rule_denies_its_endpoints() {
    // Written by an older version, say: it never went through validation.
    let mut resources: Vec<Resource> = load(PODS, "pods", &LoadOptions::default())
        .expect("pods")
        .into_iter()
        .map(|l| l.resource)
        .collect();
    let body = json!({"metadata": {"name": "broken"},
                      "spec": {"selector": "app == 'db'", "ingress": [{"action": "Allow", "source": {"selector": "a =="}}]}});
    resources.push(
        Resource::from_body(tabby_model::Kind::GlobalNetworkPolicy, body).expect("shape is fine"),
    );
    let c = Cluster::from_resources(&resources);
    assert!(!allowed(&c, "shop/web", "shop/db", 5432));
    assert!(
        allowed(&c, "shop/db", "shop/web", 8080),
        "endpoints it does not select are unaffected"
    );
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("broken") && n.contains("denies everything")),
        "{:?}",
        c.notes
    );
}

/// The shared vectors' single-connection cases, including sources outside the cluster.
#[test]
fn unit_traffic_cases_of_the_shared_vectors() {
    let Some(dir) = conformance_dir("unit_traffic_cases", "netpol") else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("netpol_cases_public.json")).expect("readable");
    let cases: Value = serde_json::from_str(&text).expect("json");
    let cases = cases["unit_traffic_cases"]
        .as_array()
        .expect("unit_traffic_cases");
    assert!(!cases.is_empty());
    for case in cases {
        let desc = case["desc"].as_str().unwrap_or("?");
        let t = &case["traffic"];
        let mut docs = case["policies"].as_array().expect("policies").clone();
        // A case may name the destination port instead of numbering it: the destination pod then
        // serves that name on an arbitrary number, and the probe goes to that number.
        const NAMED_PORT_NUMBER: u16 = 8080;
        let port_name = t["port_name"].as_str();
        let pod = |side: &Value, name: &str, containers: Value| {
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": side["namespace"], "labels": side["pod_labels"]},
                   "spec": {"containers": containers}, "status": {"podIP": side["ip"]}})
        };
        let ns = |side: &Value| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": side["namespace"], "labels": side["namespace_labels"]}})
        };
        let external = t["source"]["external"].as_bool() == Some(true);
        if !external {
            docs.push(ns(&t["source"]));
            docs.push(pod(&t["source"], "src", json!([])));
        }
        if t["destination"]["namespace"] != t["source"]["namespace"] || external {
            docs.push(ns(&t["destination"]));
        }
        let served = match port_name {
            Some(name) => {
                json!([{"name": "c", "ports": [{"name": name, "containerPort": NAMED_PORT_NUMBER, "protocol": t["protocol"]}]}])
            }
            None => json!([]),
        };
        docs.push(pod(&t["destination"], "dst", served));
        let text = json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string();
        let resources: Vec<Resource> = load(&text, desc, &LoadOptions::default())
            .expect("case loads")
            .into_iter()
            .map(|l| l.resource)
            .collect();
        let c = Cluster::from_resources(&resources);
        let dst_ns = t["destination"]["namespace"].as_str().expect("ns");
        let dst = Peer::Endpoint(c.endpoint(&format!("{dst_ns}/dst")).expect("dst"));
        let src = if external {
            Peer::External(t["source"]["ip"].as_str().expect("ip").parse().expect("ip"))
        } else {
            let src_ns = t["source"]["namespace"].as_str().expect("ns");
            Peer::Endpoint(c.endpoint(&format!("{src_ns}/src")).expect("src"))
        };
        let protocol = Protocol::parse(&tabby_model::values::IntOrString::String(
            t["protocol"].as_str().expect("protocol").to_owned(),
        ))
        .expect("protocol");
        let q = Query {
            protocol,
            port: match port_name {
                Some(_) => Some(NAMED_PORT_NUMBER),
                None => Some(
                    t["port"]
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                        .expect("port or port_name"),
                ),
            },
            source_port: None,
            icmp: None,
        };
        let v = evaluate(&c, src, dst, &q);
        assert_eq!(
            v.allowed(),
            case["allowed"].as_bool().expect("allowed"),
            "{desc}: {v:?}"
        );
    }
}

#[test]
fn an_unconvertible_kubernetes_policy_still_isolates_its_pods() {
    let mut resources: Vec<Resource> = load(PODS, "pods", &LoadOptions::default())
        .expect("pods")
        .into_iter()
        .map(|l| l.resource)
        .collect();
    let body = json!({"metadata": {"name": "odd", "namespace": "shop"},
                      "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                               "ingress": [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}]}});
    resources.push(
        Resource::from_body(tabby_model::Kind::K8sNetworkPolicy, body).expect("shape is fine"),
    );
    let c = Cluster::from_resources(&resources);
    assert!(
        !allowed(&c, "shop/web", "shop/db", 5432),
        "its pods must stay isolated"
    );
    assert!(
        allowed(&c, "shop/db", "shop/web", 8080),
        "other pods are unaffected"
    );
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("odd") && n.contains("cannot be converted")),
        "{:?}",
        c.notes
    );
}
