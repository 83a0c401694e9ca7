//! The per-host engine on small, readable clusters: the order deltas come in, what is and is
//! not expanded for the host, staged policies, fail-closed handling of broken input, and
//! tear-down in reverse order.

use tabby_calc::{
    Delta, Engine, HostState, IpSetMember, Packet, PolicyId, ResourceKey, RouteTarget, Update,
};
use tabby_model::policy::PolicyType;
use tabby_model::{Kind, LoadOptions, Resource, load};

const CLUSTER: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: shop, labels: {team: shop}}}
- apiVersion: v1
  kind: Pod
  metadata: {name: web, namespace: shop, labels: {app: web}}
  spec: {nodeName: node-1, containers: [{name: c}]}
  status: {podIP: 10.65.0.10}
- apiVersion: v1
  kind: Pod
  metadata: {name: db, namespace: shop, labels: {app: db}}
  spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 5432, name: pg}]}]}
  status: {podIP: 10.65.0.20}
- apiVersion: projectcalico.org/v3
  kind: Node
  metadata: {name: node-2}
  spec: {bgp: {ipv4Address: 192.0.2.2/24}}
- apiVersion: projectcalico.org/v3
  kind: NetworkPolicy
  metadata: {name: web-to-db, namespace: shop}
  spec:
    selector: app == 'web'
    types: [Egress]
    egress:
    - {action: Allow, protocol: TCP, destination: {selector: app == 'db', ports: [pg]}}
- apiVersion: projectcalico.org/v3
  kind: NetworkPolicy
  metadata: {name: db-only, namespace: shop}
  spec:
    selector: app == 'db'
    ingress:
    - {action: Allow, source: {selector: app == 'web'}}
- apiVersion: projectcalico.org/v3
  kind: StagedNetworkPolicy
  metadata: {name: staged-deny, namespace: shop}
  spec: {selector: all(), types: [Ingress]}
"#;

fn resources(text: &str) -> Vec<Resource> {
    load(text, "test", &LoadOptions::default())
        .expect("test input must load")
        .into_iter()
        .map(|l| l.resource)
        .collect()
}

fn synced(host: &str, rs: &[Resource]) -> (Engine, Vec<Delta>) {
    let mut engine = Engine::new(host);
    for r in rs {
        engine.apply(Update::upsert(r.clone()));
    }
    assert!(
        engine.flush().is_empty(),
        "nothing is emitted before in-sync"
    );
    engine.set_in_sync();
    let deltas = engine.flush();
    (engine, deltas)
}

fn position(deltas: &[Delta], f: impl Fn(&Delta) -> bool) -> usize {
    deltas
        .iter()
        .position(f)
        .unwrap_or_else(|| panic!("expected delta missing from {deltas:#?}"))
}

#[test]
fn deltas_come_in_dependency_order_and_only_for_local_endpoints() {
    let (_, deltas) = synced("node-1", &resources(CLUSTER));
    let set = position(&deltas, |d| matches!(d, Delta::IpSetCreated { .. }));
    let policy = position(&deltas, |d| matches!(d, Delta::PolicyUpdated(_)));
    let profile = position(&deltas, |d| matches!(d, Delta::ProfileUpdated(_)));
    let endpoint = position(&deltas, |d| matches!(d, Delta::EndpointUpdated(_)));
    let route = position(&deltas, |d| matches!(d, Delta::RouteUpdated(_)));
    assert!(set < policy && policy < profile && profile < endpoint && endpoint < route);

    let mut state = HostState::default();
    state.apply_all(&deltas).expect("the contract holds");
    // Only web is local; db's policy selects nothing here, so it is not expanded.
    assert_eq!(state.endpoints.len(), 1);
    let ids: Vec<String> = state.policies.keys().map(ToString::to_string).collect();
    assert_eq!(ids, ["NetworkPolicy \"shop/web-to-db\""]);
    // The named-port set holds db's address with the port its name resolves to.
    let (_, set) = state.ip_sets.iter().next().expect("one set");
    let members: Vec<IpSetMember> = set.members.iter().copied().collect();
    assert_eq!(
        members,
        [IpSetMember::NetPort {
            addr: "10.65.0.20".parse().unwrap(),
            protocol: 6,
            port: 5432
        }]
    );
    // Routes: web through its veth, db through node-2's address.
    let web = state.routes.get(&"10.65.0.10/32".parse().unwrap());
    assert!(matches!(web, Some(RouteTarget::Local { interface }) if interface.starts_with("tb")));
    let db = state.routes.get(&"10.65.0.20/32".parse().unwrap());
    assert_eq!(
        db,
        Some(&RouteTarget::Remote {
            node: "node-2".into(),
            via: "192.0.2.2".parse().unwrap()
        })
    );
    // Staged policies are carried, never enforced.
    assert!(
        deltas
            .iter()
            .all(|d| !matches!(d, Delta::PolicyUpdated(p) if p.id.name == "staged-deny"))
    );
}

#[test]
fn a_label_change_moves_set_members_and_nothing_else() {
    let rs = resources(CLUSTER);
    let (mut engine, deltas) = synced("node-1", &rs);
    let mut state = HostState::default();
    state.apply_all(&deltas).unwrap();
    let mut db = rs
        .iter()
        .find(|r| r.name() == "db" && r.kind() == Kind::Pod)
        .unwrap()
        .clone();
    db.meta_mut().labels.insert("app".into(), "cache".into());
    engine.apply(Update::upsert(db));
    let deltas = engine.flush();
    // db leaves the rule's selector set and its named-port set; no policy or endpoint
    // changes.
    assert_eq!(deltas.len(), 2, "{deltas:#?}");
    assert!(
        deltas.iter().all(|d| matches!(d, Delta::IpSetMembers { added, removed, .. } if added.is_empty() && removed.len() == 1)),
        "{deltas:#?}"
    );
    state.apply_all(&deltas).unwrap();
}

#[test]
fn a_broken_selector_that_reaches_the_engine_isolates_its_namespace() {
    // An older version might have stored this; today's validation refuses it at apply.
    let mut rs = resources(CLUSTER);
    let mut broken = rs.iter().find(|r| r.name() == "web-to-db").unwrap().clone();
    if let Resource::NetworkPolicy(p) = &mut broken {
        p.metadata.name = "broken".into();
        p.spec.selector = Some("app == ".into());
    }
    rs.push(broken);
    let (engine, deltas) = synced("node-1", &rs);
    let mut state = HostState::default();
    state.apply_all(&deltas).unwrap();
    let web = state.endpoints.values().next().unwrap();
    let broken_id = PolicyId {
        kind: Kind::NetworkPolicy,
        namespace: "shop".into(),
        name: "broken".into(),
    };
    assert!(web.tiers.iter().any(|t| t.egress.contains(&broken_id)));
    let pkt = Packet {
        src: "10.65.0.10".parse().unwrap(),
        dst: "10.65.0.20".parse().unwrap(),
        protocol: 6,
        src_port: None,
        dst_port: Some(5432),
        icmp: None,
    };
    assert_eq!(state.allows(&web.id, PolicyType::Egress, &pkt), Some(false));
    let notes: Vec<(&ResourceKey, &[String])> = engine.notes().collect();
    assert!(
        notes
            .iter()
            .any(|(k, n)| k.name == "broken" && n[0].contains("denies everything")),
        "{notes:?}"
    );
}

#[test]
fn removing_everything_tears_down_in_reverse_order() {
    let rs = resources(CLUSTER);
    let (mut engine, deltas) = synced("node-1", &rs);
    let mut state = HostState::default();
    state.apply_all(&deltas).unwrap();
    for r in &rs {
        engine.apply(Update::Remove(ResourceKey::of(r)));
    }
    let deltas = engine.flush();
    state
        .apply_all(&deltas)
        .expect("the contract holds on the way out");
    assert_eq!(state, HostState::default(), "nothing is left");
    let route = position(&deltas, |d| matches!(d, Delta::RouteRemoved(_)));
    let endpoint = position(&deltas, |d| matches!(d, Delta::EndpointRemoved(_)));
    let policy = position(&deltas, |d| matches!(d, Delta::PolicyRemoved(_)));
    let set = position(&deltas, |d| matches!(d, Delta::IpSetRemoved(_)));
    assert!(route < endpoint && endpoint < policy && policy < set);
}

#[test]
fn a_missing_profile_fails_closed() {
    let text = r#"
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: vm1, namespace: default, labels: {app: vm}}
spec:
  node: node-1
  interfaceName: tbvm1
  ipNetworks: [10.65.9.1/32]
  profiles: [no-such-profile]
"#;
    let (_, deltas) = synced("node-1", &resources(text));
    let mut state = HostState::default();
    state.apply_all(&deltas).unwrap();
    let vm = state.endpoints.values().next().unwrap();
    assert_eq!(vm.missing_profile.as_deref(), Some("no-such-profile"));
    assert!(vm.profiles.is_empty());
    let pkt = Packet {
        src: "10.65.9.9".parse().unwrap(),
        dst: "10.65.9.1".parse().unwrap(),
        protocol: 6,
        src_port: None,
        dst_port: Some(22),
        icmp: None,
    };
    assert_eq!(state.allows(&vm.id, PolicyType::Ingress, &pkt), Some(false));
}
