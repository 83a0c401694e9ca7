use std::time::Duration;

use tabby_calc::{Delta, HostState};

use super::*;
use crate::test_support::{CLUSTER, put, sqlite};

const WAIT: Duration = Duration::from_secs(2);

fn state_of(deltas: &[Delta]) -> HostState {
    let mut s = HostState::default();
    s.apply_all(deltas).expect("the delta contract holds");
    s
}

#[test]
fn snapshot_then_watch_matches_a_fresh_resync() {
    let (_dir, store) = sqlite();
    put(store.as_ref(), CLUSTER);
    let mut syncer = Syncer::new(store.clone(), "node-1");
    assert!(matches!(syncer.poll(WAIT), Err(SyncError::NotSynced)));
    let first = syncer.resync().expect("resync");
    let mut state = state_of(&first);
    assert_eq!(
        state.endpoints.len(),
        2,
        "only node-1's endpoints: {state:?}"
    );
    assert_eq!(syncer.engine().stats().active_policies, 1);

    // A change: a third local workload, and the policy now allows 9090 too.
    let rev = put(
        store.as_ref(),
        r#"
apiVersion: v1
kind: List
items:
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {name: node--1-k8s-c-eth0, namespace: lab, labels: {app: a}}
  spec: {node: node-1, interfaceName: tbc, ipNetworks: [10.65.0.3/32], profiles: [kns.lab]}
- apiVersion: projectcalico.org/v3
  kind: NetworkPolicy
  metadata: {name: b-from-a, namespace: lab}
  spec:
    selector: app == 'b'
    types: [Ingress]
    ingress:
    - {action: Allow, protocol: TCP, source: {selector: app == 'a'}, destination: {ports: [8080, 9090]}}
"#,
    );
    let mut incremental = Vec::new();
    while syncer.revision() < rev {
        incremental.extend(syncer.poll(WAIT).expect("poll"));
    }
    assert!(!incremental.is_empty());
    state.apply_all(&incremental).expect("contract holds");
    // And a deletion.
    store
        .delete(
            &tabby_store::Key::new("WorkloadEndpoint", "lab", "node--1-k8s-a-eth0"),
            None,
        )
        .expect("delete");
    let deltas = syncer.poll(WAIT).expect("poll");
    state.apply_all(&deltas).expect("contract holds");
    assert_eq!(state.endpoints.len(), 2);

    // Nothing missed, nothing doubled: the same as what a fresh snapshot describes.
    let mut fresh = Syncer::new(store, "node-1");
    assert_eq!(state, state_of(&fresh.resync().expect("resync")));
    assert!(
        syncer
            .poll(Duration::from_millis(20))
            .expect("idle")
            .is_empty()
    );
}

#[test]
fn compaction_is_reported_and_a_resync_describes_the_new_state_from_nothing() {
    let (_dir, store) = sqlite();
    put(store.as_ref(), CLUSTER);
    let mut syncer = Syncer::new(store.clone(), "node-1");
    syncer.resync().expect("resync");
    store
        .delete(
            &tabby_store::Key::new("NetworkPolicy", "lab", "b-from-a"),
            None,
        )
        .expect("delete");
    let rev = put(
        store.as_ref(),
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: other, namespace: lab}\nspec: {selector: app == 'a', types: [Egress]}\n",
    );
    store.compact(rev).expect("compact");
    match syncer.poll(WAIT) {
        Err(SyncError::Compacted { .. }) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(!syncer.is_synced());
    let again = state_of(&syncer.resync().expect("resync"));
    assert_eq!(again.policies.len(), 1, "{again:?}");
    assert_eq!(syncer.revision(), rev);
}
