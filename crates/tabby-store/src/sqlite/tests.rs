use std::thread;
use std::time::Duration;

use super::*;
use crate::conformance::ScratchDir;
use crate::{Event, Watch};

const WAIT: Duration = Duration::from_secs(10);

fn pool(name: &str) -> Key {
    Key::new("IPPool", "", name)
}

fn put(key: Key, value: &str) -> Op {
    Op::Put {
        key,
        value: value.to_owned(),
    }
}

fn next(watch: &mut dyn Watch) -> Event {
    watch
        .next(WAIT)
        .expect("the watch must not fail")
        .expect("an event must arrive")
}

#[test]
fn revisions_start_at_one_and_count_up() {
    let dir = ScratchDir::new("sqlite-revisions");
    let store = SqliteStore::open(dir.file("t")).expect("open");
    assert_eq!(store.revision().expect("revision"), 0);
    assert_eq!(store.create(&pool("a"), "{}").expect("create"), 1);
    assert_eq!(store.create(&pool("b"), "{}").expect("create"), 2);
    assert!(store.create(&pool("a"), "{}").is_err());
    assert_eq!(
        store
            .commit(&[put(pool("c"), "{}"), put(pool("d"), "{}")])
            .expect("commit"),
        3,
        "a failed write takes no revision and a commit takes one"
    );
}

#[test]
fn the_file_is_marked_as_a_tabby_datastore_in_wal_mode() {
    let dir = ScratchDir::new("sqlite-marked");
    let path = dir.file("t");
    drop(SqliteStore::open(&path).expect("open"));

    let conn = Connection::open(&path).expect("raw open");
    assert_eq!(
        application_id(&conn).expect("application_id"),
        APPLICATION_ID
    );
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("schema version");
    assert_eq!(version, SCHEMA_VERSION);
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("tables");
    tables.sort();
    assert_eq!(tables, ["changelog", "meta", "objects"]);
}

#[test]
fn reopening_keeps_objects_revision_and_history() {
    let dir = ScratchDir::new("sqlite-reopen");
    let path = dir.file("t");
    {
        let store = SqliteStore::open(&path).expect("open");
        store.create(&pool("a"), "{\"x\":1}").expect("create");
        store
            .update(&pool("a"), "{\"x\":2}", Some(1))
            .expect("update");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.revision().expect("revision"), 2);
    let entry = store.get(&pool("a")).expect("get").expect("a exists");
    assert_eq!(
        (
            entry.value.as_str(),
            entry.create_revision,
            entry.mod_revision
        ),
        ("{\"x\":2}", 1, 2)
    );
    let mut watch = store.watch(0, WatchFilter::default()).expect("watch");
    assert_eq!(next(&mut *watch).revision(), 1);
    assert_eq!(next(&mut *watch).revision(), 2);
}

#[test]
fn an_empty_file_is_claimed() {
    let dir = ScratchDir::new("sqlite-empty");
    let path = dir.file("t");
    fs::write(&path, b"").expect("touch");
    let store = SqliteStore::open(&path).expect("an empty file is an empty database");
    store.create(&pool("a"), "{}").expect("create");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = ScratchDir::new("sqlite-schema");
    let path = dir.file("t");
    drop(SqliteStore::open(&path).expect("open"));
    let conn = Connection::open(&path).expect("raw open");
    conn.execute(
        "UPDATE meta SET value = 99 WHERE name = 'schema_version'",
        [],
    )
    .expect("bump the schema version");
    drop(conn);
    let err = SqliteStore::open(&path).expect_err("a newer schema must be refused");
    assert_eq!(
        err,
        StoreError::UnsupportedSchema {
            path: path.clone(),
            found: 99,
            supported: SCHEMA_VERSION
        }
    );
}

#[test]
fn many_handles_can_create_the_same_file_at_once() {
    let dir = ScratchDir::new("sqlite-race");
    let path = dir.file("t");
    thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = &path;
                scope.spawn(move || {
                    let store =
                        SqliteStore::open(path).expect("every concurrent open must succeed");
                    store.create(&pool(&format!("p{i}")), "{}").expect("create");
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("opener thread");
        }
    });
    let store = SqliteStore::open(&path).expect("open");
    assert_eq!(store.list(None, None).expect("list").entries.len(), 8);
    assert_eq!(store.revision().expect("revision"), 8);
}

#[test]
fn a_watch_sees_commits_made_through_another_handle() {
    let dir = ScratchDir::new("sqlite-other-handle");
    let path = dir.file("t");
    let watcher = SqliteStore::open(&path).expect("open");
    let writer = SqliteStore::open(&path).expect("open");
    let mut watch = watcher.watch(0, WatchFilter::default()).expect("watch");
    assert_eq!(watch.next(Duration::from_millis(20)).expect("next"), None);
    let rev = writer.create(&pool("a"), "{}").expect("create");
    // Nothing wakes this watch but its poll of the data version.
    let event = next(&mut *watch);
    assert_eq!(event.revision(), rev);
    assert_eq!(event.key(), &pool("a"));
}

#[test]
fn a_large_commit_is_delivered_whole_and_in_order_across_batches() {
    const OPS: usize = 2 * watch::BATCH + 100;
    let dir = ScratchDir::new("sqlite-batches");
    let store = SqliteStore::open(dir.file("t")).expect("open");
    let ops: Vec<Op> = (0..OPS)
        .map(|i| {
            let kind = if i % 3 == 0 { "NetworkSet" } else { "IPPool" };
            put(Key::new(kind, "", format!("k{i:05}")), "{}")
        })
        .collect();
    let rev = store.commit(&ops).expect("commit");
    let after = store.create(&pool("after"), "{}").expect("create");

    let mut all = store.watch(0, WatchFilter::default()).expect("watch");
    for op in &ops {
        let event = next(&mut *all);
        assert_eq!((event.key(), event.revision()), (op.key(), rev));
    }
    assert_eq!(next(&mut *all).revision(), after);

    let filter = WatchFilter {
        kind: Some("NetworkSet".to_owned()),
        namespace: None,
    };
    let mut sets = store.watch(0, filter.clone()).expect("watch");
    for op in ops.iter().filter(|op| filter.matches(op.key())) {
        assert_eq!(next(&mut *sets).key(), op.key());
    }
    assert_eq!(sets.next(Duration::from_millis(50)).expect("next"), None);
}

#[test]
fn a_watch_that_falls_behind_compaction_stays_failed() {
    let dir = ScratchDir::new("sqlite-behind");
    let store = SqliteStore::open(dir.file("t")).expect("open");
    let first = store.create(&pool("a"), "{}").expect("create");
    let mut watch = store.watch(0, WatchFilter::default()).expect("watch");
    assert_eq!(next(&mut *watch).revision(), first);
    for i in 0..3 {
        store
            .update(&pool("a"), &format!("{{\"i\":{i}}}"), None)
            .expect("update");
    }
    let head = store.revision().expect("revision");
    store.compact(head).expect("compact");
    let expected = StoreError::Compacted {
        requested: first,
        compacted: head,
    };
    assert_eq!(watch.next(WAIT), Err(expected.clone()));
    assert_eq!(watch.next(WAIT), Err(expected), "the watch stays failed");
}

#[test]
fn a_watch_from_the_future_waits_for_that_revision() {
    let dir = ScratchDir::new("sqlite-future");
    let store = SqliteStore::open(dir.file("t")).expect("open");
    let mut watch = store.watch(2, WatchFilter::default()).expect("watch");
    for name in ["a", "b", "c"] {
        store.create(&pool(name), "{}").expect("create");
    }
    assert_eq!(next(&mut *watch).key(), &pool("c"));
}

#[test]
fn probing_refuses_files_that_are_not_sqlite() {
    let dir = ScratchDir::new("sqlite-probe");
    let text = dir.file("text");
    fs::write(&text, "SQLite format 2\n and then some").expect("write");
    assert!(matches!(probe(&text), Err(StoreError::NotOurs { .. })));
    assert!(matches!(probe(dir.path()), Err(StoreError::NotOurs { .. })));
    assert_eq!(probe(&dir.file("missing")), Ok(()));
}
