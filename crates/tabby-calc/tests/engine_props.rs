//! Property tests of the incremental engine against a from-scratch run and against the
//! reference evaluator: random clusters (pods, workload endpoints, namespaces, service
//! accounts, network sets, tiers, global, namespaced and Kubernetes policies, profiles) fed in
//! random order with churn (variants that are later replaced, resources that come and go,
//! flushes at random moments). After the updates, the state the deltas built equals a fresh
//! engine's, every delta respected the ordering contract, and every probe between a local
//! endpoint and any peer gets the evaluator's answer.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::{Value, json};
use tabby_calc::{Cluster, Engine, HostState, Packet, Peer, Query, ResourceKey, Update, evaluate};
use tabby_model::policy::PolicyType;
use tabby_model::values::Protocol;
use tabby_model::{LoadOptions, Resource, load};
use tabby_test_util::Dice;

const HOST: &str = "host-a";

const NAMESPACES: &[&str] = &["a", "b", "c"];
const SELECTORS: &[&str] = &[
    "all()",
    "app == 'web'",
    "app == 'db'",
    "has(tier)",
    "tier == 'front' || app == 'api'",
    "!has(env)",
    "app in {'web', 'api'}",
    "projectcalico.org/namespace == 'a'",
    "role == 'edge'",
];
const NAMESPACE_SELECTORS: &[&str] = &["team == 'x'", "all()", "global()", "!has(team)"];

fn labels(rng: &mut Dice) -> Value {
    let mut m = serde_json::Map::new();
    if rng.chance(70) {
        m.insert("app".into(), json!(rng.pick(&["web", "db", "api"])));
    }
    if rng.chance(40) {
        m.insert("tier".into(), json!(rng.pick(&["front", "back"])));
    }
    if rng.chance(20) {
        m.insert("env".into(), json!("prod"));
    }
    Value::Object(m)
}

fn named_ports(rng: &mut Dice) -> Vec<Value> {
    if !rng.chance(50) {
        return Vec::new();
    }
    vec![json!({
        "name": "http",
        "containerPort": *rng.pick(&[8080, 8081]),
        "protocol": *rng.pick(&["TCP", "UDP"]),
    })]
}

fn pod(rng: &mut Dice, i: usize) -> Value {
    let mut spec = json!({
        "nodeName": *rng.pick(&[HOST, HOST, "host-b"]),
        "containers": [{"name": "c", "ports": named_ports(rng)}],
    });
    if rng.chance(40) {
        spec["serviceAccountName"] = json!("sa1");
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p{i}"), "namespace": *rng.pick(NAMESPACES), "labels": labels(rng)},
        "spec": spec,
        "status": {"podIP": format!("10.0.0.{}", i + 1)},
    })
}

fn wep(rng: &mut Dice, i: usize) -> Value {
    let ns = *rng.pick(NAMESPACES);
    let ports: Vec<Value> = named_ports(rng)
        .into_iter()
        .map(|p| json!({"name": p["name"], "port": p["containerPort"], "protocol": p["protocol"]}))
        .collect();
    let profiles = match rng.below(3) {
        0 => json!([format!("kns.{ns}")]),
        1 => json!([format!("kns.{ns}"), "custom"]),
        _ => json!(["custom", "absent"]),
    };
    json!({
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": format!("w{i}"), "namespace": ns, "labels": labels(rng)},
        "spec": {
            "node": *rng.pick(&[HOST, "host-b"]),
            "orchestrator": "cni",
            "interfaceName": format!("tbw{i}"),
            "ipNetworks": [format!("10.0.1.{}/32", i + 1)],
            "profiles": profiles,
            "ports": ports,
        },
    })
}

fn entity(rng: &mut Dice, namespaced: bool) -> Value {
    let mut e = serde_json::Map::new();
    if rng.chance(45) {
        e.insert("selector".into(), json!(rng.pick(SELECTORS)));
    }
    if rng.chance(20) {
        e.insert(
            "namespaceSelector".into(),
            json!(rng.pick(NAMESPACE_SELECTORS)),
        );
    }
    if rng.chance(10) {
        e.insert("notSelector".into(), json!(rng.pick(SELECTORS)));
    }
    if rng.chance(15) {
        e.insert(
            "nets".into(),
            json!([rng.pick(&["10.0.0.0/29", "192.168.1.0/24", "10.0.1.0/24"])]),
        );
    }
    if rng.chance(8) {
        e.insert(
            "notNets".into(),
            json!([rng.pick(&["10.0.0.0/30", "192.168.0.0/16"])]),
        );
    }
    if rng.chance(10) {
        let sa = if rng.chance(50) {
            json!({"names": ["sa1"]})
        } else {
            json!({"selector": "role == 'reader'"})
        };
        e.insert("serviceAccounts".into(), sa);
    }
    let _ = namespaced;
    Value::Object(e)
}

fn rule(rng: &mut Dice, namespaced: bool) -> Value {
    let action = *rng.pick(&["Allow", "Allow", "Allow", "Deny", "Pass", "Log"]);
    let mut r = json!({"action": action});
    if rng.chance(60) {
        r["protocol"] = json!(rng.pick(&["TCP", "UDP"]));
    }
    let mut src = entity(rng, namespaced);
    let mut dst = entity(rng, namespaced);
    if r.get("protocol").is_some() {
        if rng.chance(50) {
            dst["ports"] =
                json!([rng.pick(&[json!(80), json!(8080), json!("http"), json!("8000:8100")])]);
        }
        if rng.chance(8) {
            dst["notPorts"] = json!([rng.pick(&[json!(8080), json!("http")])]);
        }
    } else if rng.chance(10) {
        r["notProtocol"] = json!("UDP");
    }
    if rng.chance(5) {
        src["selector"] = json!("app == 'web'");
    }
    r["source"] = src;
    r["destination"] = dst;
    r
}

fn calico_policy(rng: &mut Dice, kind: &str, name: &str, ns: Option<&str>) -> Value {
    let namespaced = ns.is_some();
    let mut spec = json!({
        "tier": *rng.pick(&["default", "default", "security", "ghost"]),
        "selector": *rng.pick(SELECTORS),
    });
    if rng.chance(70) {
        spec["order"] = json!(rng.pick(&[10.0, 100.0, 100.0, 500.0]));
    }
    let tier = spec["tier"].as_str().unwrap_or("default").to_owned();
    let name = if tier == "default" {
        name.to_owned()
    } else {
        format!("{tier}.{name}")
    };
    if !namespaced && rng.chance(15) {
        spec["namespaceSelector"] = json!(rng.pick(&["team == 'x'", "has(team)"]));
    }
    if rng.chance(8) {
        spec["serviceAccountSelector"] = json!("role == 'reader'");
    }
    let ingress: Vec<Value> = (0..rng.below(3)).map(|_| rule(rng, namespaced)).collect();
    let egress: Vec<Value> = (0..rng.below(3)).map(|_| rule(rng, namespaced)).collect();
    let (ingress, egress) = match rng.below(4) {
        0 => {
            spec["types"] = json!(["Ingress"]);
            (ingress, Vec::new())
        }
        1 => {
            spec["types"] = json!(["Egress"]);
            (Vec::new(), egress)
        }
        2 => {
            spec["types"] = json!(["Ingress", "Egress"]);
            (ingress, egress)
        }
        _ => (ingress, egress),
    };
    spec["ingress"] = json!(ingress);
    spec["egress"] = json!(egress);
    let mut meta = json!({"name": name});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns);
    }
    json!({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec})
}

fn k8s_policy(rng: &mut Dice, name: &str) -> Value {
    let pod_selector = if rng.chance(30) {
        json!({})
    } else {
        json!({"matchLabels": {"app": rng.pick(&["web", "db", "api"])}})
    };
    let peer = |rng: &mut Dice| match rng.below(4) {
        0 => json!({"podSelector": {"matchLabels": {"app": rng.pick(&["web", "db"])}}}),
        1 => json!({"namespaceSelector": {"matchLabels": {"team": "x"}}}),
        2 => {
            json!({"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}})
        }
        _ => json!({"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.0/30"]}}),
    };
    let port = |rng: &mut Dice| match rng.below(3) {
        0 => json!({"port": 8080}),
        1 => json!({"port": "http"}),
        _ => json!({"protocol": "UDP", "port": 8000, "endPort": 8100}),
    };
    let mut spec = json!({"podSelector": pod_selector});
    if rng.chance(70) {
        let rules: Vec<Value> = (0..rng.below(3))
            .map(|_| {
                let mut r = json!({});
                if rng.chance(70) {
                    r["from"] = json!([peer(rng)]);
                }
                if rng.chance(50) {
                    r["ports"] = json!([port(rng)]);
                }
                r
            })
            .collect();
        spec["ingress"] = json!(rules);
    }
    if rng.chance(40) {
        let rules: Vec<Value> = (0..rng.below(2))
            .map(|_| json!({"to": [peer(rng)], "ports": [port(rng)]}))
            .collect();
        spec["egress"] = json!(rules);
        spec["policyTypes"] = json!(["Ingress", "Egress"]);
    }
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": *rng.pick(NAMESPACES)},
        "spec": spec,
    })
}

fn one_resource(rng: &mut Dice, slot: usize) -> Value {
    // Slots give stable names so that variants of the same slot replace each other.
    match slot {
        0..8 => pod(rng, slot),
        8..11 => wep(rng, slot - 8),
        11..13 => {
            let ns = NAMESPACES[slot - 11];
            let mut labels = json!({});
            if rng.chance(60) {
                labels["team"] = json!(rng.pick(&["x", "y"]));
            }
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
        }
        13..15 => {
            let ns = NAMESPACES[slot - 13];
            let labels = if rng.chance(50) {
                json!({"role": "reader"})
            } else {
                json!({})
            };
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "sa1", "namespace": ns, "labels": labels}})
        }
        15 => json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
                     "metadata": {"name": "edge", "labels": {"role": "edge"}},
                     "spec": {"nets": [rng.pick(&["192.168.1.0/24", "10.0.0.0/30"])]}}),
        16 => json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkSet",
                     "metadata": {"name": "partners", "namespace": "a", "labels": {"role": rng.pick(&["edge", "other"])}},
                     "spec": {"nets": ["10.0.0.4/31", "172.16.0.0/16"]}}),
        17 => json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
                     "metadata": {"name": "security"},
                     "spec": {"order": *rng.pick(&[100.0, 2_000_000.0]), "defaultAction": *rng.pick(&["Deny", "Pass"])}}),
        18 => json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
                     "metadata": {"name": "custom"},
                     "spec": {"labelsToApply": {"tier": "back"},
                              "ingress": [rule(rng, false)], "egress": [{"action": "Allow"}]}}),
        19..23 => calico_policy(rng, "GlobalNetworkPolicy", &format!("g{slot}"), None),
        23..27 => {
            let ns = *rng.pick(NAMESPACES);
            calico_policy(rng, "NetworkPolicy", &format!("n{slot}"), Some(ns))
        }
        _ => k8s_policy(rng, &format!("k{slot}")),
    }
}

const SLOTS: usize = 30;

fn to_resource(v: &Value) -> Resource {
    let text = v.to_string();
    let mut loaded = load(&text, "generated", &LoadOptions::default())
        .unwrap_or_else(|e| panic!("generated resource must load: {e}\n{text}"));
    loaded.remove(0).resource
}

/// A random cluster: each slot present or not.
fn cluster(rng: &mut Dice) -> Vec<Resource> {
    let mut out: BTreeMap<ResourceKey, Resource> = BTreeMap::new();
    for slot in 0..SLOTS {
        if rng.chance(75) {
            let r = to_resource(&one_resource(rng, slot));
            out.insert(ResourceKey::of(&r), r);
        }
    }
    out.into_values().collect()
}

fn run_fresh(resources: &[Resource]) -> HostState {
    let mut engine = Engine::new(HOST);
    for r in resources {
        engine.apply(Update::upsert(r.clone()));
    }
    engine.set_in_sync();
    let mut state = HostState::default();
    state
        .apply_all(&engine.flush())
        .unwrap_or_else(|e| panic!("fresh run broke the contract: {e}"));
    assert!(
        engine.flush().is_empty(),
        "a second flush with no updates emits nothing"
    );
    state
}

/// Feeds the final resources in a random order, with churn, flushing now and then.
fn run_churned(rng: &mut Dice, resources: &[Resource]) -> HostState {
    let mut updates: Vec<Update> = resources.iter().cloned().map(Update::upsert).collect();
    for i in (1..updates.len()).rev() {
        updates.swap(i, rng.below(i + 1));
    }
    // Noise: variants of slots that are later replaced or removed.
    let mut noisy = Vec::new();
    for u in updates {
        if rng.chance(30) {
            let slot = rng.below(SLOTS);
            let noise = to_resource(&one_resource(rng, slot));
            let key = ResourceKey::of(&noise);
            let final_version = resources.iter().find(|r| ResourceKey::of(r) == key);
            noisy.push(Update::upsert(noise));
            // Not in the final state: must go. In it: sometimes goes and comes back below.
            if final_version.is_none() || rng.chance(50) {
                noisy.push(Update::Remove(key));
            }
        }
        noisy.push(u);
    }
    // Anything removed by noise after its final version went in comes back at the end.
    for r in resources {
        noisy.push(Update::upsert(r.clone()));
    }
    let in_sync_at = rng.below(noisy.len() + 1);
    let mut engine = Engine::new(HOST);
    let mut state = HostState::default();
    for (i, u) in noisy.into_iter().enumerate() {
        if i == in_sync_at {
            engine.set_in_sync();
        }
        engine.apply(u);
        if rng.chance(20) {
            let deltas = engine.flush();
            state
                .apply_all(&deltas)
                .unwrap_or_else(|e| panic!("churned run broke the contract: {e}"));
        }
    }
    engine.set_in_sync();
    state
        .apply_all(&engine.flush())
        .unwrap_or_else(|e| panic!("churned run broke the contract: {e}"));
    state
}

fn probes() -> Vec<(Protocol, u16)> {
    vec![
        (Protocol::Tcp, 80),
        (Protocol::Tcp, 8080),
        (Protocol::Udp, 8080),
        (Protocol::Udp, 8050),
        (Protocol::Tcp, 8081),
    ]
}

fn agree_with_evaluator(resources: &[Resource], state: &HostState) -> Result<(), TestCaseError> {
    let cluster = Cluster::from_resources(resources);
    let externals: Vec<IpAddr> = ["192.168.1.5", "10.9.9.9", "172.16.0.1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    for local in cluster
        .endpoints
        .values()
        .filter(|e| e.node.as_deref() == Some(HOST))
    {
        let Some(&local_ip) = local.ips.first() else {
            continue;
        };
        let peers: Vec<Peer<'_>> = cluster
            .endpoints
            .values()
            .filter(|e| e.id != local.id && !e.ips.is_empty())
            .map(Peer::Endpoint)
            .chain(externals.iter().map(|ip| Peer::External(*ip)))
            .collect();
        for peer in peers {
            let peer_ip = match peer {
                Peer::Endpoint(e) => e.ips[0],
                Peer::External(ip) => ip,
            };
            for (protocol, port) in probes() {
                let q = Query {
                    protocol,
                    port: Some(port),
                    source_port: None,
                    icmp: None,
                };
                let pkt = |src, dst| Packet {
                    src,
                    dst,
                    protocol: protocol.number(),
                    src_port: None,
                    dst_port: Some(port),
                    icmp: None,
                };
                let inbound = evaluate(&cluster, peer, Peer::Endpoint(local), &q);
                let got = state.allows(&local.id, PolicyType::Ingress, &pkt(peer_ip, local_ip));
                prop_assert_eq!(
                    got,
                    Some(inbound.ingress.decision.allowed()),
                    "ingress {} from {} on {}: evaluator says\n{}",
                    local.id,
                    peer_ip,
                    q,
                    inbound.ingress
                );
                let outbound = evaluate(&cluster, Peer::Endpoint(local), peer, &q);
                let got = state.allows(&local.id, PolicyType::Egress, &pkt(local_ip, peer_ip));
                prop_assert_eq!(
                    got,
                    Some(outbound.egress.decision.allowed()),
                    "egress {} to {} on {}: evaluator says\n{}",
                    local.id,
                    peer_ip,
                    q,
                    outbound.egress
                );
            }
        }
    }
    // Every local endpoint is there, and nothing else.
    let local: Vec<String> = cluster
        .endpoints
        .values()
        .filter(|e| e.node.as_deref() == Some(HOST))
        .map(|e| e.id.to_string())
        .collect();
    let held: Vec<String> = state.endpoints.keys().map(ToString::to_string).collect();
    prop_assert_eq!(held, local);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 192,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The engine's answer does not depend on the order of updates, and agrees with the
    /// reference evaluator on every probe.
    #[test]
    fn engine_matches_fresh_run_and_evaluator(seed in any::<u64>()) {
        let mut rng = Dice(seed);
        let resources = cluster(&mut rng);
        let fresh = run_fresh(&resources);
        let churned = run_churned(&mut rng, &resources);
        prop_assert_eq!(&churned, &fresh, "seed {}", seed);
        agree_with_evaluator(&resources, &fresh)?;
    }
}
