//! Fixtures for the unit tests: a SQLite store in a scratch folder, resources written from
//! YAML, a store that can be made to fail, and a shared fake nft.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tabby_dataplane::{FakeNft, NftApply, NftError};
use tabby_model::{LoadOptions, load, stored};
use tabby_store::sqlite::SqliteStore;
use tabby_store::{
    Datastore, Entry, Event, Key, Listing, Op, Revision, StoreError, Watch, WatchFilter,
};
use tabby_test_util::ScratchDir;

pub(crate) const CLUSTER: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: lab}}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {name: node--1-k8s-a-eth0, namespace: lab, labels: {app: a}}
  spec: {node: node-1, interfaceName: tba, ipNetworks: [10.65.0.1/32], profiles: [kns.lab]}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {name: node--1-k8s-b-eth0, namespace: lab, labels: {app: b}}
  spec: {node: node-1, interfaceName: tbb, ipNetworks: [10.65.0.2/32], profiles: [kns.lab]}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {name: node--2-k8s-z-eth0, namespace: lab, labels: {app: a}}
  spec: {node: node-2, interfaceName: tbz, ipNetworks: [10.65.1.9/32], profiles: [kns.lab]}
- apiVersion: projectcalico.org/v3
  kind: NetworkPolicy
  metadata: {name: b-from-a, namespace: lab}
  spec:
    selector: app == 'b'
    types: [Ingress]
    ingress:
    - {action: Allow, protocol: TCP, source: {selector: app == 'a'}, destination: {ports: [8080]}}
"#;

/// A store in a scratch folder (kept alive by the returned guard).
pub(crate) fn sqlite() -> (ScratchDir, Arc<SqliteStore>) {
    let dir = ScratchDir::new("node-unit");
    let store = SqliteStore::open(dir.file("store")).expect("open store");
    (dir, Arc::new(store))
}

/// Writes every resource of `yaml` in one commit.
pub(crate) fn put(store: &dyn Datastore, yaml: &str) -> Revision {
    let ops: Vec<Op> = load(yaml, "test", &LoadOptions::default())
        .expect("test input loads")
        .into_iter()
        .map(|l| {
            let f = stored::encode(&l.resource);
            Op::Put {
                key: Key::new(f.kind, f.namespace, f.name),
                value: f.json,
            }
        })
        .collect();
    store.commit(&ops).expect("commit")
}

/// Wraps a store; while `down` is set, every call fails as a lost backend would.
pub(crate) struct Flaky {
    pub(crate) inner: Arc<dyn Datastore>,
    pub(crate) down: Arc<AtomicBool>,
}

fn lost() -> StoreError {
    StoreError::Backend {
        location: "test".to_owned(),
        message: "connection lost".to_owned(),
    }
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(lost())
        } else {
            Ok(())
        }
    }
}

struct FlakyWatch {
    inner: Box<dyn Watch>,
    down: Arc<AtomicBool>,
}

impl Watch for FlakyWatch {
    fn next(&mut self, timeout: Duration) -> Result<Option<Event>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(lost());
        }
        self.inner.next(timeout)
    }
}

impl Datastore for Flaky {
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        self.check()?;
        self.inner.get(key)
    }
    fn list(&self, kind: Option<&str>, namespace: Option<&str>) -> Result<Listing, StoreError> {
        self.check()?;
        self.inner.list(kind, namespace)
    }
    fn commit(&self, ops: &[Op]) -> Result<Revision, StoreError> {
        self.check()?;
        self.inner.commit(ops)
    }
    fn watch(&self, after: Revision, filter: WatchFilter) -> Result<Box<dyn Watch>, StoreError> {
        self.check()?;
        Ok(Box::new(FlakyWatch {
            inner: self.inner.watch(after, filter)?,
            down: self.down.clone(),
        }))
    }
    fn compact(&self, up_to: Revision) -> Result<(), StoreError> {
        self.check()?;
        self.inner.compact(up_to)
    }
    fn revision(&self) -> Result<Revision, StoreError> {
        self.check()?;
        self.inner.revision()
    }
}

/// A [`FakeNft`] the test keeps a handle on after giving it to the dataplane.
#[derive(Clone, Default)]
pub(crate) struct SharedNft(pub(crate) Arc<Mutex<FakeNft>>);

impl NftApply for SharedNft {
    fn apply(&mut self, script: &str) -> Result<(), NftError> {
        self.0.lock().expect("lock").apply(script)
    }
}

impl SharedNft {
    pub(crate) fn scripts(&self) -> Vec<String> {
        self.0.lock().expect("lock").scripts.clone()
    }
    pub(crate) fn fail_next(&self, msg: &str) {
        self.0.lock().expect("lock").fail_next = Some(msg.to_owned());
    }
}
