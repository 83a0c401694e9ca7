//! The behaviour every [`Datastore`] backend must show, written against the trait alone so
//! that the SQLite and etcd backends run the same checks.
//!
//! Each check takes a [`Factory`] that returns a fresh, empty store and panics, saying what
//! went wrong, when the backend misbehaves. A backend's integration test calls each check
//! from its own `#[test]` (or [`run_all`]). The checks assume only what every backend
//! promises: revisions increase strictly but need not be consecutive or start at 0 (etcd's
//! revision is cluster-wide), and a watch from `0` starts at the beginning of the store's
//! history. They do assume that nothing else writes to the backend during a check.
//!
//! [`multi_process_cas`] needs processes, which only the test binary can start: it takes a
//! closure that spawns one child, and the child runs [`cas_worker`].

#[cfg(feature = "etcd")]
pub mod etcd;

use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use crate::{Datastore, Entry, Event, Key, Op, Revision, StoreError, Watch, WatchFilter};

/// Makes a fresh, empty datastore.
pub type Factory<'a> = &'a dyn Fn() -> Box<dyn Datastore>;

/// How long a check waits for an event it expects: generous, as machines are shared.
const EXPECT: Duration = Duration::from_secs(10);

/// How long a check waits to be sure no further event comes.
const QUIET: Duration = Duration::from_millis(100);

/// Runs every single-process check, each on a fresh store.
pub fn run_all(factory: Factory<'_>) {
    crate::conformance_tests!(@list calls (factory));
}

/// One `#[test]` per check for a backend's integration tests, from the one list of checks:
/// `|tag| FIXTURE, |fixture| FRESH` makes each test's fixture from its name, then hands the
/// check a factory that evaluates `FRESH` (a fresh, empty store) with the fixture in scope.
///
/// ```text
/// tabby_store::conformance_tests!(|tag| EtcdFixture::start(tag, 1), |etcd| etcd.fresh());
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (|$tag:ident| $fixture:expr, |$f:ident| $fresh:expr $(,)?) => {
        $crate::conformance_tests!(@list tests ($tag, $fixture, $f, $fresh));
    };
    // Every check, in the order `run_all` runs them.
    (@list $rule:ident $args:tt) => {
        $crate::conformance_tests!(@ $rule $args
            crud_round_trip,
            create_of_an_existing_key_fails,
            missing_keys_are_not_found,
            stale_revisions_conflict_and_change_nothing,
            list_is_sorted_and_filtered,
            commit_is_all_or_nothing,
            commit_writes_one_revision,
            commit_refuses_duplicate_and_invalid_keys,
            revisions_increase_strictly,
            watch_from_zero_replays_history_in_order,
            watch_from_a_middle_revision_gives_only_later_changes,
            watch_filters_by_kind_and_namespace,
            list_then_watch_continues_without_gap,
            watch_delivers_live_writes_from_other_threads,
            watch_times_out_without_changes,
            watch_across_compaction,
            concurrent_cas_from_threads
        );
    };
    (@tests ($tag:ident, $fixture:expr, $f:ident, $fresh:expr) $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                let $tag = stringify!($check);
                let $f = $fixture;
                $crate::conformance::$check(&|| $fresh);
            }
        )*
    };
    (@calls ($factory:ident) $($check:ident),*) => {
        $( $crate::conformance::$check($factory); )*
    };
}

// ===== helpers =====

fn policy(name: &str) -> Key {
    Key::new("NetworkPolicy", "default", name)
}

fn pool(name: &str) -> Key {
    Key::new("IPPool", "", name)
}

fn json(n: u64) -> String {
    format!("{{\"spec\":{{\"order\":{n}}}}}")
}

fn entry(key: &Key, value: &str, create: Revision, modified: Revision) -> Entry {
    Entry {
        key: key.clone(),
        value: value.to_owned(),
        create_revision: create,
        mod_revision: modified,
    }
}

fn next(watch: &mut dyn Watch, what: &str) -> Event {
    match watch.next(EXPECT) {
        Ok(Some(event)) => event,
        Ok(None) => panic!("{what}: no event within {EXPECT:?}"),
        Err(err) => panic!("{what}: watch failed: {err}"),
    }
}

fn next_n(watch: &mut dyn Watch, n: usize, what: &str) -> Vec<Event> {
    (0..n).map(|_| next(watch, what)).collect()
}

fn assert_quiet(watch: &mut dyn Watch, what: &str) {
    match watch.next(QUIET) {
        Ok(None) => {}
        other => panic!("{what}: expected no further event, got {other:?}"),
    }
}

fn must<T>(result: Result<T, StoreError>, what: &str) -> T {
    result.unwrap_or_else(|err| panic!("{what}: {err}"))
}

// ===== basic operations =====

/// Create, get, update, list and delete one object, with the revisions each step reports.
pub fn crud_round_trip(factory: Factory<'_>) {
    let store = factory();
    let key = policy("allow-web");
    let start = must(store.revision(), "revision");
    assert_eq!(must(store.get(&key), "get"), None, "a fresh store is empty");
    assert!(
        must(store.list(None, None), "list").entries.is_empty(),
        "a fresh store is empty"
    );

    let created = must(store.create(&key, &json(1)), "create");
    assert!(
        created > start,
        "the first write gets a revision above the fresh store's {start}, got {created}"
    );
    assert_eq!(must(store.revision(), "revision"), created);
    assert_eq!(
        must(store.get(&key), "get after create"),
        Some(entry(&key, &json(1), created, created))
    );

    let updated = must(store.update(&key, &json(2), Some(created)), "update");
    assert!(updated > created, "update must get a later revision");
    assert_eq!(
        must(store.get(&key), "get after update"),
        Some(entry(&key, &json(2), created, updated)),
        "update keeps create_revision and moves mod_revision"
    );

    let unconditional = must(
        store.update(&key, &json(3), None),
        "update without revision",
    );
    let listing = must(store.list(Some("NetworkPolicy"), None), "list");
    assert_eq!(
        listing.entries,
        vec![entry(&key, &json(3), created, unconditional)]
    );
    assert_eq!(listing.revision, unconditional);

    let deleted = must(store.delete(&key, Some(unconditional)), "delete");
    assert!(deleted > unconditional);
    assert_eq!(must(store.get(&key), "get after delete"), None);
    assert!(
        must(store.list(None, None), "list after delete")
            .entries
            .is_empty()
    );
    assert_eq!(must(store.revision(), "revision"), deleted);

    let recreated = must(store.create(&key, &json(4)), "create after delete");
    assert_eq!(
        must(store.get(&key), "get after re-create"),
        Some(entry(&key, &json(4), recreated, recreated)),
        "a re-created object starts a new life"
    );
}

/// Create of an existing key fails with `AlreadyExists` and changes nothing.
pub fn create_of_an_existing_key_fails(factory: Factory<'_>) {
    let store = factory();
    let key = pool("pool1");
    let rev = must(store.create(&key, &json(1)), "create");
    let err = store
        .create(&key, &json(2))
        .expect_err("second create must fail");
    assert_eq!(err, StoreError::AlreadyExists { key: key.clone() });
    assert!(
        err.to_string().contains("IPPool pool1"),
        "message names the key: {err}"
    );
    assert_eq!(
        must(store.get(&key), "get"),
        Some(entry(&key, &json(1), rev, rev))
    );
    assert_eq!(
        must(store.revision(), "revision"),
        rev,
        "a failed write takes no revision"
    );
}

/// Reads of missing keys give nothing; writes to them fail with `NotFound`, or with a
/// `Conflict` without actual revision when a revision was required.
pub fn missing_keys_are_not_found(factory: Factory<'_>) {
    let store = factory();
    let key = policy("ghost");
    let start = must(store.revision(), "revision");
    assert_eq!(must(store.get(&key), "get"), None);
    assert_eq!(
        store.update(&key, &json(1), None),
        Err(StoreError::NotFound { key: key.clone() })
    );
    assert_eq!(
        store.delete(&key, None),
        Err(StoreError::NotFound { key: key.clone() })
    );
    assert_eq!(
        store.update(&key, &json(1), Some(7)),
        Err(StoreError::Conflict {
            key: key.clone(),
            expected: 7,
            actual: None
        })
    );
    assert_eq!(
        store.delete(&key, Some(7)),
        Err(StoreError::Conflict {
            key: key.clone(),
            expected: 7,
            actual: None
        })
    );
    let err = store
        .delete(&key, None)
        .expect_err("delete of a missing key");
    assert!(
        err.to_string().contains("NetworkPolicy default/ghost"),
        "{err}"
    );
    assert_eq!(
        must(store.revision(), "revision"),
        start,
        "failed writes take no revision"
    );
    assert_eq!(
        must(store.get(&key), "get"),
        None,
        "failed writes create nothing"
    );
}

/// Update and delete with a stale revision fail with `Conflict` and change nothing.
pub fn stale_revisions_conflict_and_change_nothing(factory: Factory<'_>) {
    let store = factory();
    let key = policy("cas");
    let first = must(store.create(&key, &json(1)), "create");
    let second = must(store.update(&key, &json(2), Some(first)), "update");

    let err = store
        .update(&key, &json(99), Some(first))
        .expect_err("update with a stale revision");
    assert_eq!(
        err,
        StoreError::Conflict {
            key: key.clone(),
            expected: first,
            actual: Some(second)
        }
    );
    assert!(err.is_conflict());
    assert!(
        err.to_string().contains("NetworkPolicy default/cas"),
        "{err}"
    );

    let err = store
        .delete(&key, Some(first))
        .expect_err("delete with a stale revision");
    assert_eq!(
        err,
        StoreError::Conflict {
            key: key.clone(),
            expected: first,
            actual: Some(second)
        }
    );
    assert_eq!(
        must(store.get(&key), "get"),
        Some(entry(&key, &json(2), first, second)),
        "conflicting writes must change nothing"
    );
    assert_eq!(must(store.revision(), "revision"), second);

    let third = must(
        store.update(&key, &json(3), Some(second)),
        "update with the current revision",
    );
    must(
        store.delete(&key, Some(third)),
        "delete with the current revision",
    );
}

/// Listing sorts by kind, namespace, name and filters by kind and namespace.
pub fn list_is_sorted_and_filtered(factory: Factory<'_>) {
    let store = factory();
    let keys = [
        Key::new("NetworkPolicy", "prod", "b"),
        Key::new("IPPool", "", "z"),
        Key::new("NetworkPolicy", "default", "b"),
        Key::new("NetworkPolicy", "default", "a"),
        Key::new("NetworkSet", "default", "a"),
        Key::new("IPPool", "", "a"),
    ];
    for key in &keys {
        must(store.create(key, &json(1)), "create");
    }
    let listed = |kind: Option<&str>, ns: Option<&str>| -> Vec<Key> {
        must(store.list(kind, ns), "list")
            .entries
            .into_iter()
            .map(|e| e.key)
            .collect()
    };
    let mut sorted = keys.to_vec();
    sorted.sort();
    assert_eq!(listed(None, None), sorted, "everything, sorted by key");
    assert_eq!(
        listed(Some("NetworkPolicy"), None),
        vec![
            Key::new("NetworkPolicy", "default", "a"),
            Key::new("NetworkPolicy", "default", "b"),
            Key::new("NetworkPolicy", "prod", "b"),
        ]
    );
    assert_eq!(
        listed(Some("NetworkPolicy"), Some("default")),
        vec![
            Key::new("NetworkPolicy", "default", "a"),
            Key::new("NetworkPolicy", "default", "b"),
        ]
    );
    assert_eq!(
        listed(None, Some("default")),
        vec![
            Key::new("NetworkPolicy", "default", "a"),
            Key::new("NetworkPolicy", "default", "b"),
            Key::new("NetworkSet", "default", "a"),
        ]
    );
    assert_eq!(
        listed(None, Some("")),
        vec![Key::new("IPPool", "", "a"), Key::new("IPPool", "", "z")],
        "namespace \"\" selects cluster-scoped objects"
    );
    assert!(listed(Some("Profile"), None).is_empty());
}

// ===== commits =====

/// One failing op makes the whole commit write nothing, and the error names the op.
pub fn commit_is_all_or_nothing(factory: Factory<'_>) {
    let store = factory();
    let existing = policy("existing");
    let first = must(store.create(&existing, &json(1)), "create");

    let also = pool("also-existing");
    let rev = must(store.create(&also, &json(1)), "create");

    let ops = [
        Op::Put {
            key: pool("new-pool"),
            value: json(1),
        },
        Op::Update {
            key: existing.clone(),
            value: json(2),
            expect: None,
        },
        Op::Create {
            key: also.clone(),
            value: json(3),
        },
        Op::Delete {
            key: policy("other"),
            expect: None,
        },
    ];
    let err = store
        .commit(&ops)
        .expect_err("a commit with a failing op must fail");
    assert_eq!(
        err,
        StoreError::OpFailed {
            index: 2,
            error: Box::new(StoreError::AlreadyExists { key: also.clone() })
        }
    );
    let message = err.to_string();
    assert!(message.contains("op 2"), "message names the op: {message}");
    assert!(
        message.contains("IPPool also-existing"),
        "message names the key: {message}"
    );
    assert_eq!(
        must(store.revision(), "revision"),
        rev,
        "a failed commit takes no revision"
    );
    assert_eq!(
        must(store.get(&pool("new-pool")), "get"),
        None,
        "op 0 must not be written"
    );
    assert_eq!(
        must(store.get(&existing), "get"),
        Some(entry(&existing, &json(1), first, first)),
        "op 1 must not be written"
    );

    let stale = [
        Op::Put {
            key: pool("new-pool"),
            value: json(1),
        },
        Op::Delete {
            key: existing.clone(),
            expect: Some(rev + 1000),
        },
    ];
    let err = store
        .commit(&stale)
        .expect_err("a commit with a stale revision must fail");
    assert!(
        matches!(err, StoreError::OpFailed { index: 1, .. }),
        "{err:?}"
    );
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(must(store.get(&pool("new-pool")), "get"), None);
    assert_eq!(must(store.revision(), "revision"), rev);
}

/// A successful commit writes every op under one revision, and the watch delivers its
/// events together in op order.
pub fn commit_writes_one_revision(factory: Factory<'_>) {
    let store = factory();
    let a = policy("a");
    let b = pool("b");
    let c = policy("c");
    let first = must(store.create(&a, &json(1)), "create");
    must(store.create(&c, &json(1)), "create");
    let before = must(store.revision(), "revision");
    let mut watch = must(store.watch(before, WatchFilter::default()), "watch");

    let ops = [
        Op::Update {
            key: a.clone(),
            value: json(2),
            expect: Some(first),
        },
        Op::Create {
            key: b.clone(),
            value: json(1),
        },
        Op::Delete {
            key: c.clone(),
            expect: None,
        },
        Op::Put {
            key: Key::new("Profile", "", "p"),
            value: json(1),
        },
    ];
    let rev = must(store.commit(&ops), "commit");
    assert!(rev > before);
    assert_eq!(
        must(store.revision(), "revision"),
        rev,
        "one commit, one revision"
    );
    assert_eq!(
        must(store.get(&a), "get").map(|e| e.mod_revision),
        Some(rev)
    );
    assert_eq!(
        must(store.get(&b), "get").map(|e| e.create_revision),
        Some(rev)
    );
    assert_eq!(must(store.get(&c), "get"), None);

    let events = next_n(&mut *watch, 4, "commit events");
    assert!(events.iter().all(|e| e.revision() == rev), "{events:?}");
    let keys: Vec<&Key> = events.iter().map(Event::key).collect();
    let expected: Vec<&Key> = ops.iter().map(Op::key).collect();
    assert_eq!(keys, expected, "events come in op order");
    assert!(matches!(&events[2], Event::Delete { prev, .. } if prev.key == c));
    assert_quiet(&mut *watch, "after the commit");

    assert_eq!(
        must(store.commit(&[]), "empty commit"),
        rev,
        "an empty commit writes nothing"
    );
}

/// A commit that writes one key twice, or an unaddressable key, is refused before writing.
pub fn commit_refuses_duplicate_and_invalid_keys(factory: Factory<'_>) {
    let store = factory();
    let key = policy("twice");
    let start = must(store.revision(), "revision");
    let ops = [
        Op::Put {
            key: key.clone(),
            value: json(1),
        },
        Op::Delete {
            key: key.clone(),
            expect: None,
        },
    ];
    let err = store
        .commit(&ops)
        .expect_err("duplicate keys must be refused");
    assert_eq!(
        err,
        StoreError::OpFailed {
            index: 1,
            error: Box::new(StoreError::DuplicateKey { key: key.clone() })
        }
    );
    assert!(
        err.to_string().contains("NetworkPolicy default/twice"),
        "{err}"
    );

    for bad in [
        Key::new("", "default", "x"),
        Key::new("NetworkPolicy", "default", ""),
    ] {
        let err = store
            .create(&bad, &json(1))
            .expect_err("empty kind or name");
        assert!(matches!(err, StoreError::InvalidKey { .. }), "{err:?}");
    }
    assert_eq!(must(store.revision(), "revision"), start);
    assert_eq!(must(store.get(&key), "get"), None);
}

/// Every successful write gets a higher revision than the one before.
pub fn revisions_increase_strictly(factory: Factory<'_>) {
    let store = factory();
    let mut last = must(store.revision(), "revision");
    for i in 0..20 {
        let key = policy(&format!("p{}", i % 5));
        let rev = must(
            store.commit(&[Op::Put {
                key,
                value: json(i),
            }]),
            "put",
        );
        assert!(rev > last, "revision {rev} after {last}");
        assert_eq!(must(store.revision(), "revision"), rev);
        last = rev;
    }
}

// ===== watches =====

/// The history of a store with creates, updates, deletes and a commit, and the events a
/// watch from `0` must deliver for it.
fn write_history(store: &dyn Datastore) -> Vec<Event> {
    let a = policy("a");
    let b = pool("b");
    let c = Key::new("NetworkSet", "prod", "c");
    let r1 = must(store.create(&a, &json(1)), "create a");
    let r2 = must(store.create(&b, &json(1)), "create b");
    let r3 = must(store.update(&a, &json(2), Some(r1)), "update a");
    let r4 = must(store.delete(&b, None), "delete b");
    let r5 = must(
        store.commit(&[
            Op::Create {
                key: c.clone(),
                value: json(1),
            },
            Op::Put {
                key: a.clone(),
                value: json(3),
            },
        ]),
        "commit",
    );
    vec![
        Event::Put {
            entry: entry(&a, &json(1), r1, r1),
            prev: None,
        },
        Event::Put {
            entry: entry(&b, &json(1), r2, r2),
            prev: None,
        },
        Event::Put {
            entry: entry(&a, &json(2), r1, r3),
            prev: Some(entry(&a, &json(1), r1, r1)),
        },
        Event::Delete {
            key: b.clone(),
            revision: r4,
            prev: entry(&b, &json(1), r2, r2),
        },
        Event::Put {
            entry: entry(&c, &json(1), r5, r5),
            prev: None,
        },
        Event::Put {
            entry: entry(&a, &json(3), r1, r5),
            prev: Some(entry(&a, &json(2), r1, r3)),
        },
    ]
}

/// A watch from `0` replays every change, in order, with values, revisions and previous
/// states.
pub fn watch_from_zero_replays_history_in_order(factory: Factory<'_>) {
    let store = factory();
    let expected = write_history(&*store);
    let mut watch = must(store.watch(0, WatchFilter::default()), "watch");
    let events = next_n(&mut *watch, expected.len(), "history");
    assert_eq!(events, expected);
    assert_quiet(&mut *watch, "after the history");
}

/// A watch from a revision gives exactly the changes after it.
pub fn watch_from_a_middle_revision_gives_only_later_changes(factory: Factory<'_>) {
    let store = factory();
    let expected = write_history(&*store);
    for skip in 1..expected.len() {
        let after = expected[skip - 1].revision();
        let later: Vec<Event> = expected
            .iter()
            .filter(|e| e.revision() > after)
            .cloned()
            .collect();
        let mut watch = must(store.watch(after, WatchFilter::default()), "watch");
        let events = next_n(&mut *watch, later.len(), "later changes");
        assert_eq!(events, later, "watch after revision {after}");
        assert_quiet(&mut *watch, "after the later changes");
    }
    let head = must(store.revision(), "revision");
    let mut watch = must(store.watch(head, WatchFilter::default()), "watch from head");
    assert_quiet(&mut *watch, "a watch from the current revision");
}

/// Filters pass only the kind and namespace asked for, without losing order.
pub fn watch_filters_by_kind_and_namespace(factory: Factory<'_>) {
    let store = factory();
    let expected = write_history(&*store);
    let cases = [
        WatchFilter {
            kind: Some("NetworkPolicy".to_owned()),
            namespace: None,
        },
        WatchFilter {
            kind: None,
            namespace: Some(String::new()),
        },
        WatchFilter {
            kind: Some("NetworkSet".to_owned()),
            namespace: Some("prod".to_owned()),
        },
        WatchFilter {
            kind: Some("NetworkSet".to_owned()),
            namespace: Some("default".to_owned()),
        },
    ];
    for filter in cases {
        let wanted: Vec<Event> = expected
            .iter()
            .filter(|e| filter.matches(e.key()))
            .cloned()
            .collect();
        let mut watch = must(store.watch(0, filter.clone()), "watch");
        let events = next_n(&mut *watch, wanted.len(), "filtered history");
        assert_eq!(events, wanted, "filter {filter:?}");
        assert_quiet(&mut *watch, "after the filtered history");
    }

    // Changes the filter skips must not hold back the ones it passes.
    let mut watch = must(
        store.watch(
            must(store.revision(), "revision"),
            WatchFilter {
                kind: Some("Tier".to_owned()),
                namespace: None,
            },
        ),
        "watch",
    );
    for i in 0..50 {
        must(
            store.create(&policy(&format!("noise{i}")), &json(i)),
            "noise",
        );
    }
    let rev = must(
        store.create(&Key::new("Tier", "", "security"), &json(1)),
        "create tier",
    );
    let event = next(&mut *watch, "the tier after noise");
    assert_eq!(event.revision(), rev);
    assert_quiet(&mut *watch, "after the tier");
}

/// A listing's revision, used as a watch's start, gives exactly the changes after the
/// listing: nothing missed, nothing repeated.
pub fn list_then_watch_continues_without_gap(factory: Factory<'_>) {
    let store = factory();
    write_history(&*store);
    let listing = must(store.list(None, None), "list");
    assert_eq!(listing.revision, must(store.revision(), "revision"));

    let a = policy("a");
    let current = listing
        .entries
        .iter()
        .find(|e| e.key == a)
        .expect("the listing holds a")
        .clone();
    let r1 = must(
        store.update(&a, &json(10), Some(current.mod_revision)),
        "update",
    );
    let r2 = must(store.create(&pool("late"), &json(1)), "create");

    let mut watch = must(
        store.watch(listing.revision, WatchFilter::default()),
        "watch",
    );
    let events = next_n(&mut *watch, 2, "changes after the listing");
    assert_eq!(
        events,
        vec![
            Event::Put {
                entry: entry(&a, &json(10), current.create_revision, r1),
                prev: Some(current),
            },
            Event::Put {
                entry: entry(&pool("late"), &json(1), r2, r2),
                prev: None,
            },
        ]
    );
    assert_quiet(&mut *watch, "after the changes");
}

/// A watch waiting for changes receives writes made meanwhile by another thread, in order.
pub fn watch_delivers_live_writes_from_other_threads(factory: Factory<'_>) {
    let store = factory();
    let start = must(store.revision(), "revision");
    let mut watch = must(store.watch(start, WatchFilter::default()), "watch");
    assert_quiet(&mut *watch, "before any write");
    let revisions = thread::scope(|scope| {
        let writer = scope.spawn(|| {
            (0..20)
                .map(|i| {
                    thread::sleep(Duration::from_millis(2));
                    must(
                        store.create(&policy(&format!("live{i}")), &json(i)),
                        "create",
                    )
                })
                .collect::<Vec<_>>()
        });
        let events = next_n(&mut *watch, 20, "live writes");
        let revisions = writer.join().expect("writer thread");
        let seen: Vec<Revision> = events.iter().map(Event::revision).collect();
        assert_eq!(seen, revisions, "every write, in order");
        revisions
    });
    assert_eq!(revisions.len(), 20);
    assert_quiet(&mut *watch, "after the live writes");
}

/// `next` returns `Ok(None)` after about its timeout when nothing changes.
pub fn watch_times_out_without_changes(factory: Factory<'_>) {
    let store = factory();
    must(store.create(&policy("a"), &json(1)), "create");
    let mut watch = must(
        store.watch(must(store.revision(), "revision"), WatchFilter::default()),
        "watch",
    );
    let started = Instant::now();
    assert_eq!(must(watch.next(Duration::from_millis(50)), "next"), None);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(50),
        "returned early, after {waited:?}"
    );
    assert_eq!(
        must(watch.next(Duration::ZERO), "next without waiting"),
        None
    );
}

/// Compaction: watches from before it fail with `Compacted`, from it or later work, and
/// current objects stay.
pub fn watch_across_compaction(factory: Factory<'_>) {
    let store = factory();
    let revisions: Vec<Revision> = (0..5)
        .map(|i| must(store.create(&policy(&format!("p{i}")), &json(i)), "create"))
        .collect();
    let head = revisions[4];
    let err = store
        .compact(head + 1)
        .expect_err("compaction beyond the head");
    assert_eq!(
        err,
        StoreError::FutureRevision {
            requested: head + 1,
            current: head
        }
    );

    let at = revisions[2];
    must(store.compact(at), "compact");
    for after in [0, revisions[0], revisions[1]] {
        let mut watch = must(store.watch(after, WatchFilter::default()), "watch");
        match watch.next(EXPECT) {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => {
                assert_eq!(requested, after);
                assert_eq!(compacted, at);
            }
            other => panic!("a watch after {after} must report compaction at {at}, got {other:?}"),
        }
    }
    let mut watch = must(
        store.watch(at, WatchFilter::default()),
        "watch from the compaction",
    );
    let events = next_n(&mut *watch, 2, "changes after the compaction");
    let seen: Vec<Revision> = events.iter().map(Event::revision).collect();
    assert_eq!(seen, revisions[3..].to_vec());
    assert_quiet(&mut *watch, "after the compaction");

    assert_eq!(
        must(store.list(None, None), "list").entries.len(),
        5,
        "objects survive compaction"
    );
    must(
        store.compact(revisions[1]),
        "compaction below an earlier one does nothing",
    );
    let mut watch = must(store.watch(revisions[1], WatchFilter::default()), "watch");
    assert!(matches!(
        watch.next(EXPECT),
        Err(StoreError::Compacted { compacted, .. }) if compacted == at
    ));

    // The caller's recovery: list, then watch from the listing.
    let listing = must(store.list(None, None), "re-list");
    let mut watch = must(
        store.watch(listing.revision, WatchFilter::default()),
        "re-watch",
    );
    let rev = must(store.delete(&policy("p0"), None), "delete");
    assert_eq!(next(&mut *watch, "after re-listing").revision(), rev);
}

// ===== compare-and-swap under contention =====

/// The key [`cas_worker`] increments.
pub fn cas_key() -> Key {
    Key::new("ConformanceCounter", "", "counter")
}

/// The JSON text of the counter at `n`.
pub fn counter_value(n: u64) -> String {
    format!("{{\"count\":{n}}}")
}

/// The count in a value written by [`counter_value`].
pub fn parse_counter(value: &str) -> u64 {
    value
        .strip_prefix("{\"count\":")
        .and_then(|v| v.strip_suffix('}'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a counter value: {value:?}"))
}

/// Increments the counter `increments` times by compare-and-swap (read N at revision R,
/// write N+1 if still at R, retry on conflict); returns how many conflicts it retried.
pub fn cas_worker(store: &dyn Datastore, increments: u64) -> u64 {
    let key = cas_key();
    let mut conflicts = 0;
    let mut done = 0;
    while done < increments {
        let current = must(store.get(&key), "read the counter").expect("the counter exists");
        let n = parse_counter(&current.value);
        match store.update(&key, &counter_value(n + 1), Some(current.mod_revision)) {
            Ok(_) => done += 1,
            Err(err) if err.is_conflict() => conflicts += 1,
            Err(err) => panic!("incrementing the counter: {err}"),
        }
    }
    conflicts
}

/// Creates the counter at 0, returning its revision.
fn create_counter(store: &dyn Datastore) -> Revision {
    must(
        store.create(&cas_key(), &counter_value(0)),
        "create the counter",
    )
}

/// Checks the counter ended at `total` and that a watch saw every increment, in order.
fn check_counter(store: &dyn Datastore, created: Revision, total: u64) {
    let counter = must(store.get(&cas_key()), "read the counter").expect("the counter exists");
    assert_eq!(
        parse_counter(&counter.value),
        total,
        "no increment may be lost"
    );
    let mut watch = must(
        store.watch(
            created,
            WatchFilter {
                kind: Some(cas_key().kind),
                namespace: None,
            },
        ),
        "watch",
    );
    let mut last = created;
    for n in 1..=total {
        let Event::Put { entry, prev } = next(&mut *watch, "increments") else {
            panic!("the counter is never deleted");
        };
        assert_eq!(parse_counter(&entry.value), n, "increments in order");
        assert_eq!(
            prev.map(|p| parse_counter(&p.value)),
            Some(n - 1),
            "each increment replaced the count before it"
        );
        assert!(entry.mod_revision > last);
        last = entry.mod_revision;
    }
    assert_quiet(&mut *watch, "after the last increment");
}

/// Four threads sharing one store handle increment one counter by compare-and-swap; no
/// increment is lost.
pub fn concurrent_cas_from_threads(factory: Factory<'_>) {
    const THREADS: u64 = 4;
    const EACH: u64 = 100;
    let store = factory();
    let created = create_counter(&*store);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| cas_worker(&*store, EACH));
        }
    });
    check_counter(&*store, created, THREADS * EACH);
}

/// Several processes increment one counter by compare-and-swap; no increment is lost.
///
/// `spawn(i)` starts child `i`, which must open the same datastore and run
/// [`cas_worker`] with `increments`; each child must exit successfully.
pub fn multi_process_cas(
    store: &dyn Datastore,
    processes: usize,
    increments: u64,
    spawn: &mut dyn FnMut(usize) -> Child,
) {
    let created = create_counter(store);
    let children: Vec<Child> = (0..processes).map(&mut *spawn).collect();
    for (i, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().expect("waiting for a child");
        assert!(
            output.status.success(),
            "child {i} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let total = u64::try_from(processes).expect("a process count fits") * increments;
    check_counter(store, created, total);
}

// ===== scratch space =====

/// Scratch folders for backends' tests (shared with every crate's tests).
pub use tabby_test_util::ScratchDir;
