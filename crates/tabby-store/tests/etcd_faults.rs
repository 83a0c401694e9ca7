//! The etcd backend under faults, with real members: watches that lose their member and
//! resume, history compacted while a watcher was away, the leader killed during a storm of
//! compare-and-swap writes, and the whole cluster stopped and started again.

#![cfg(feature = "etcd")]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tabby_store::conformance::etcd::EtcdFixture;
use tabby_store::etcd::EtcdStore;
use tabby_store::{Datastore, Event, Key, Revision, StoreError, Watch, WatchFilter};

fn open(url: &str) -> Box<dyn Datastore> {
    Box::new(EtcdStore::open(url).unwrap_or_else(|e| panic!("opening {url}: {e}")))
}

fn key(i: usize) -> Key {
    Key::new("WorkloadEndpoint", "default", format!("wep-{i}"))
}

fn value(i: usize, generation: usize) -> String {
    format!("{{\"i\":{i},\"gen\":{generation}}}")
}

/// What an agent keeps: the objects as it has seen them, kept current by a watch, re-listed
/// when the watch reports compaction. Every event is checked against the state it changes,
/// so a missed or repeated event fails the test.
struct Mirror {
    store: Box<dyn Datastore>,
    state: BTreeMap<Key, String>,
    watch: Box<dyn Watch>,
    revision: Revision,
    relists: usize,
}

impl Mirror {
    fn new(store: Box<dyn Datastore>) -> Self {
        let (state, revision) = list(&*store);
        let watch = store
            .watch(revision, WatchFilter::default())
            .expect("watch");
        Self {
            store,
            state,
            watch,
            revision,
            relists: 0,
        }
    }

    fn relist(&mut self) {
        let (state, revision) = list(&*self.store);
        self.state = state;
        self.revision = revision;
        self.watch = self
            .store
            .watch(revision, WatchFilter::default())
            .expect("watch after re-listing");
        self.relists += 1;
    }

    /// Handles one event if one comes within `wait`; `Err` for a compaction.
    fn step(&mut self, wait: Duration) -> Result<bool, StoreError> {
        let Some(event) = self.watch.next(wait)? else {
            return Ok(false);
        };
        assert!(
            event.revision() >= self.revision,
            "event at {} after {}: a repeat",
            event.revision(),
            self.revision
        );
        self.revision = event.revision();
        match event {
            Event::Put { entry, prev } => {
                assert_eq!(
                    prev.map(|p| p.value),
                    self.state.get(&entry.key).cloned(),
                    "{}: the event's previous state is not the one seen: an event was missed",
                    entry.key
                );
                self.state.insert(entry.key, entry.value);
            }
            Event::Delete { key, prev, .. } => {
                assert_eq!(
                    Some(prev.value),
                    self.state.remove(&key),
                    "{key}: missed event"
                );
            }
        }
        Ok(true)
    }

    /// Follows the watch until the state equals `target`, re-listing on compaction.
    fn converge(&mut self, target: &BTreeMap<Key, String>, within: Duration) {
        let deadline = Instant::now() + within;
        while &self.state != target {
            assert!(
                Instant::now() < deadline,
                "no convergence within {within:?}: {} objects seen, {} expected",
                self.state.len(),
                target.len()
            );
            match self.step(Duration::from_millis(100)) {
                Ok(_) => {}
                Err(StoreError::Compacted { .. }) => self.relist(),
                Err(err) => panic!("the watch failed: {err}"),
            }
        }
    }
}

fn list(store: &dyn Datastore) -> (BTreeMap<Key, String>, Revision) {
    let listing = store.list(None, None).expect("list");
    let state = listing
        .entries
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect();
    (state, listing.revision)
}

fn write_range(store: &dyn Datastore, range: std::ops::Range<usize>, generation: usize) {
    for i in range {
        store
            .commit(&[tabby_store::Op::Put {
                key: key(i),
                value: value(i, generation),
            }])
            .expect("write");
    }
}

/// A watcher talking to member 0 alone loses it; writes go on through the other two; the
/// member comes back and the watch resumes from the last revision it delivered.
#[test]
fn a_watch_resumes_from_its_last_revision_when_its_member_returns() {
    let mut etcd = EtcdFixture::start("resume", 3);
    let prefix = etcd.fresh_prefix();
    let writer = open(&etcd.members().url(&prefix));
    let mut mirror = Mirror::new(open(&etcd.members().member_url(0, &prefix)));
    write_range(&*writer, 0..10, 1);
    mirror.converge(&list(&*writer).0, Duration::from_secs(10));

    etcd.cluster().stop(0);
    // Opening through every member works with one of them down.
    let late = open(&etcd.members().url(&prefix));
    assert_eq!(list(&*late).0, list(&*writer).0);
    write_range(&*writer, 5..20, 2);
    assert!(
        !mirror
            .step(Duration::from_millis(300))
            .expect("no error while away"),
        "nothing arrives while the member is down"
    );
    etcd.cluster().restart(0).expect("restart");
    etcd.cluster()
        .wait_ready(Duration::from_secs(20))
        .expect("member 0 back");
    mirror.converge(&list(&*writer).0, Duration::from_secs(20));
    assert_eq!(mirror.relists, 0, "resumed, not re-listed");

    // And it keeps following.
    write_range(&*writer, 0..3, 3);
    mirror.converge(&list(&*writer).0, Duration::from_secs(10));
}

/// While the watcher's member is down, the history it still needs is compacted away: the
/// watch reports compaction when it comes back, and the consumer re-lists and converges.
#[test]
fn history_compacted_while_a_watcher_was_away_makes_it_relist() {
    let mut etcd = EtcdFixture::start("compact-away", 3);
    let prefix = etcd.fresh_prefix();
    let writer = open(&etcd.members().url(&prefix));
    let mut mirror = Mirror::new(open(&etcd.members().member_url(0, &prefix)));
    write_range(&*writer, 0..10, 1);
    mirror.converge(&list(&*writer).0, Duration::from_secs(10));
    let seen = mirror.revision;

    etcd.cluster().stop(0);
    write_range(&*writer, 0..10, 2);
    writer
        .delete(&key(3), None)
        .expect("delete while the watcher is away");
    let head = writer.revision().expect("revision");
    writer.compact(head).expect("compact");
    etcd.cluster().restart(0).expect("restart");
    etcd.cluster()
        .wait_ready(Duration::from_secs(20))
        .expect("member 0 back");

    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        match mirror.step(Duration::from_millis(200)) {
            Err(err) => break err,
            Ok(_) => assert!(Instant::now() < deadline, "no compaction reported"),
        }
    };
    assert_eq!(
        err,
        StoreError::Compacted {
            requested: seen,
            compacted: head
        }
    );
    mirror.relist();
    assert_eq!(mirror.state, list(&*writer).0);
    write_range(&*writer, 20..25, 1);
    mirror.converge(&list(&*writer).0, Duration::from_secs(10));
    assert_eq!(mirror.relists, 1);
}

/// Writers increment a counter by compare-and-swap through all three members; the leader is
/// killed mid-storm. Every write etcd acknowledged is in the counter's history, with the
/// value and revision acknowledged, and the history has no hole.
#[test]
fn no_acknowledged_write_is_lost_when_the_leader_is_killed() {
    const WRITERS: usize = 4;
    let mut etcd = EtcdFixture::start("leader-kill", 3);
    let url = etcd.members().url(&etcd.fresh_prefix());
    let store = open(&url);
    let counter = Key::new("Counter", "", "storm");
    let created = store.create(&counter, "0").expect("create the counter");

    let acked: Mutex<Vec<(Revision, u64)>> = Mutex::new(Vec::new());
    let unknown = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let killed_at = thread::scope(|scope| {
        for _ in 0..WRITERS {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(current)) = store.get(&counter) else {
                        unknown.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let n: u64 = current.value.parse().expect("a count");
                    match store.update(&counter, &(n + 1).to_string(), Some(current.mod_revision)) {
                        Ok(rev) => acked.lock().unwrap().push((rev, n + 1)),
                        Err(err) if err.is_conflict() => {}
                        // Unknown outcome (the leader died with the request): not acknowledged.
                        Err(_) => {
                            unknown.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        let wait_for = |n: usize, within: Duration| {
            let deadline = Instant::now() + within;
            while acked.lock().unwrap().len() < n {
                assert!(
                    Instant::now() < deadline,
                    "fewer than {n} writes acknowledged in {within:?}"
                );
                thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for(200, Duration::from_secs(30));
        let leader = etcd.members().leader().expect("a leader");
        let before = acked.lock().unwrap().len();
        etcd.cluster().kill(leader);
        wait_for(before + 200, Duration::from_secs(30));
        stop.store(true, Ordering::Relaxed);
        before
    });
    let mut acked = acked.into_inner().unwrap();
    assert!(acked.len() > killed_at, "writes went on after the kill");

    let last = store.get(&counter).expect("read").expect("the counter");
    let total: u64 = last.value.parse().expect("a count");
    let mut watch = store
        .watch(created, WatchFilter::default())
        .expect("watch the history");
    let mut history = BTreeMap::new();
    for n in 1..=total {
        let event = watch
            .next(Duration::from_secs(10))
            .expect("history")
            .expect("every increment is in the history");
        let Event::Put { entry, prev } = event else {
            panic!("the counter is never deleted");
        };
        assert_eq!(entry.value, n.to_string(), "the history has no hole");
        assert_eq!(prev.map(|p| p.value), Some((n - 1).to_string()));
        history.insert(entry.mod_revision, n);
    }
    acked.sort_unstable();
    for (rev, n) in &acked {
        assert_eq!(
            history.get(rev),
            Some(n),
            "acknowledged write of {n} at revision {rev} is missing"
        );
    }
    assert!(
        total >= acked.len() as u64,
        "{total} increments in the history, {} acknowledged",
        acked.len()
    );
}

/// All three members stop at once; the watcher waits without failing, and converges when the
/// cluster returns with its data.
#[test]
fn a_watcher_converges_after_the_whole_cluster_restarts() {
    let mut etcd = EtcdFixture::start("cluster-restart", 3);
    let prefix = etcd.fresh_prefix();
    let url = etcd.members().url(&prefix);
    let writer = open(&url);
    let mut mirror = Mirror::new(open(&url));
    write_range(&*writer, 0..20, 1);
    mirror.converge(&list(&*writer).0, Duration::from_secs(10));

    for i in 0..3 {
        etcd.cluster().kill(i);
    }
    for _ in 0..5 {
        assert!(
            !mirror
                .step(Duration::from_millis(100))
                .expect("a watch without a cluster waits"),
            "no event without a cluster"
        );
    }
    let err = writer
        .create(&key(99), "{}")
        .expect_err("no write without a cluster");
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    // The watch says why it waits, naming the members (an agent reports it as not ready).
    let deadline = Instant::now() + Duration::from_secs(10);
    let why = loop {
        if let Some(why) = mirror.watch.disconnected() {
            break why;
        }
        assert!(
            Instant::now() < deadline,
            "the watch never reported the outage"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let member = etcd.members().members()[0].client.to_string();
    assert!(why.to_string().contains(&member), "{why}");

    for i in 0..3 {
        etcd.cluster().restart(i).expect("restart");
    }
    etcd.cluster()
        .wait_ready(Duration::from_secs(30))
        .expect("the cluster is back");
    write_range(&*writer, 10..30, 2);
    mirror.converge(&list(&*writer).0, Duration::from_secs(30));
    assert_eq!(mirror.relists, 0);
    assert_eq!(mirror.watch.disconnected(), None, "connected again");
}

/// Two of three members stop: the one left has no leader, so its watch stream is cancelled
/// (the client requires a leader) and the watch says it is cut off rather than wait quietly
/// on a member that cannot know of new writes; once a second member returns it resumes.
#[test]
fn a_watch_on_a_member_without_quorum_reports_it_and_resumes() {
    let mut etcd = EtcdFixture::start("quorum", 3);
    let prefix = etcd.fresh_prefix();
    let writer = open(&etcd.members().url(&prefix));
    let mut mirror = Mirror::new(open(&etcd.members().member_url(0, &prefix)));
    write_range(&*writer, 0..10, 1);
    mirror.converge(&list(&*writer).0, Duration::from_secs(10));

    etcd.cluster().kill(1);
    etcd.cluster().kill(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while mirror.watch.disconnected().is_none() {
        assert!(
            Instant::now() < deadline,
            "the watch never reported the lost quorum"
        );
        assert!(
            !mirror.step(Duration::from_millis(100)).expect("no error"),
            "nothing to deliver"
        );
    }

    etcd.cluster().restart(1).expect("restart");
    etcd.cluster()
        .wait_ready(Duration::from_secs(30))
        .expect("quorum back");
    write_range(&*writer, 5..15, 2);
    mirror.converge(&list(&*writer).0, Duration::from_secs(30));
    assert_eq!(mirror.relists, 0);
    assert_eq!(mirror.watch.disconnected(), None);
}
