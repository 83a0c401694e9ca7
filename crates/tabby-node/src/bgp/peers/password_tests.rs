//! Passwords: Secrets resolved as Calico resolves them, and sessions held back with the exact
//! reason while they cannot be.

use tabby_model::{LoadOptions, load};

use super::*;

const NODES: &str = "
- {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: a}, spec: {bgp: {ipv4Address: 10.0.0.1/24}}}
- {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: b}, spec: {bgp: {ipv4Address: 10.0.0.2/24}}}
";

fn feed(i: &mut BgpInputs, items: &str) {
    let yaml = format!("apiVersion: v1\nkind: List\nitems:{items}");
    for l in load(&yaml, "test", &LoadOptions::default()).expect("test input loads") {
        i.upsert(&l.resource);
    }
}

fn peer(i: &BgpInputs, ns: &str, addr: &str) -> WantedPeer {
    let d = i.desired_with_secrets("a", ns).expect("a runs BGP");
    d.peers[&addr.parse::<IpAddr>().expect("address")].clone()
}

fn key(s: &str) -> Option<Md5Key> {
    Some(Md5Key::new(s).expect("a valid key"))
}

#[test]
fn a_peer_password_waits_for_its_secret_and_key_then_runs_with_the_value() {
    let mut i = BgpInputs::default();
    feed(
        &mut i,
        &format!(
            "{NODES}- {{apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {{name: default}}, spec: {{nodeToNodeMeshEnabled: false}}}}
- apiVersion: projectcalico.org/v3
  kind: BGPPeer
  metadata: {{name: tor}}
  spec: {{peerIP: 10.0.0.254, asNumber: 65000, password: {{secretKeyRef: {{name: bgp-secrets, key: tor}}}}}}
"
        ),
    );
    let p = peer(&i, "calico-system", "10.0.0.254");
    assert_eq!(
        p.refused.as_deref(),
        Some("password Secret \"calico-system/bgp-secrets\" not found")
    );
    assert_eq!(p.config.md5_key, None);

    // A Secret of that name elsewhere, or without the key, does not do.
    feed(
        &mut i,
        "
- {apiVersion: v1, kind: Secret, metadata: {name: bgp-secrets, namespace: default}, stringData: {tor: elsewhere}}
- {apiVersion: v1, kind: Secret, metadata: {name: bgp-secrets, namespace: calico-system}, stringData: {other: x}}
",
    );
    assert_eq!(
        peer(&i, "calico-system", "10.0.0.254").refused.as_deref(),
        Some("password Secret \"calico-system/bgp-secrets\" has no key \"tor\"")
    );

    let before = i.generation();
    feed(
        &mut i,
        "
- {apiVersion: v1, kind: Secret, metadata: {name: bgp-secrets, namespace: calico-system}, data: {tor: czNjcmV0}}
",
    );
    assert!(
        i.generation() > before,
        "a Secret change is an input change"
    );
    let p = peer(&i, "calico-system", "10.0.0.254");
    assert_eq!(p.refused, None);
    assert_eq!(p.config.md5_key, key("s3cret"));
    // The agent's namespace decides.
    assert_eq!(
        peer(&i, "default", "10.0.0.254").config.md5_key,
        key("elsewhere")
    );

    i.remove_key(Kind::Secret, "calico-system", "bgp-secrets");
    assert_eq!(
        peer(&i, "calico-system", "10.0.0.254").refused.as_deref(),
        Some("password Secret \"calico-system/bgp-secrets\" not found")
    );
}

#[test]
fn the_mesh_password_keys_every_mesh_session_and_an_unusable_value_says_why() {
    let mut i = BgpInputs::default();
    feed(
        &mut i,
        &format!(
            "{NODES}- apiVersion: projectcalico.org/v3
  kind: BGPConfiguration
  metadata: {{name: default}}
  spec: {{nodeMeshPassword: {{secretKeyRef: {{name: mesh, key: pw}}}}}}
- {{apiVersion: v1, kind: Secret, metadata: {{name: mesh, namespace: calico-system}}, stringData: {{pw: meshpw}}}}
"
        ),
    );
    let p = peer(&i, "calico-system", "10.0.0.2");
    assert_eq!(p.kind, PeerKind::Mesh);
    assert_eq!((p.refused, p.config.md5_key), (None, key("meshpw")));

    let long = "k".repeat(81);
    feed(
        &mut i,
        &format!(
            "
- {{apiVersion: v1, kind: Secret, metadata: {{name: mesh, namespace: calico-system}}, stringData: {{pw: {long}}}}}
"
        ),
    );
    assert_eq!(
        peer(&i, "calico-system", "10.0.0.2").refused.as_deref(),
        Some(
            "password Secret \"calico-system/mesh\" key \"pw\" is 81 bytes; TCP MD5 takes at most 80"
        )
    );
}
