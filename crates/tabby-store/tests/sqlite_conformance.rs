//! The backend conformance suite run against SQLite, plus what only a shared file can get
//! wrong: several processes at once, files that are not ours, read-only files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tabby_store::conformance::{self, ScratchDir};
use tabby_store::sqlite::SqliteStore;
use tabby_store::{Datastore, Key, StoreError, WatchFilter, open};

/// A fresh store in its own file under `dir`, reached through the public URL form.
fn fresh(dir: &ScratchDir) -> Box<dyn Datastore> {
    let path = dir.file("conformance");
    open(&format!("sqlite:{}", path.display())).expect("a fresh sqlite store must open")
}

tabby_store::conformance_tests!(|tag| ScratchDir::new(tag), |dir| fresh(&dir));

// ===== several processes =====

/// Tell a re-executed copy of this binary to act as a compare-and-swap worker.
const CHILD_DB: &str = "TABBY_STORE_TEST_CAS_DB";
const CHILD_INCREMENTS: &str = "TABBY_STORE_TEST_CAS_INCREMENTS";

/// The child side of `four_processes_increment_one_counter_by_cas`; without its environment
/// (an ordinary test run) it does nothing.
#[test]
fn cas_child_worker() {
    let (Ok(db), Ok(increments)) = (std::env::var(CHILD_DB), std::env::var(CHILD_INCREMENTS))
    else {
        return;
    };
    let store = open(&format!("sqlite:{db}")).expect("the child must open the parent's store");
    let increments = increments.parse().expect("an increment count");
    conformance::cas_worker(&*store, increments);
}

#[test]
fn four_processes_increment_one_counter_by_cas() {
    let dir = ScratchDir::new("multi-process-cas");
    let path = dir.file("cas");
    let store = SqliteStore::open(&path).expect("open");
    let exe = std::env::current_exe().expect("the test binary's path");
    conformance::multi_process_cas(&store, 4, 500, &mut |_| {
        Command::new(&exe)
            .args([
                "--exact",
                "cas_child_worker",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD_DB, &path)
            .env(CHILD_INCREMENTS, "500")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("re-executing the test binary")
    });
}

// ===== files that are not ours =====

fn assert_refused_untouched(path: &Path, what: &str) {
    let before = std::fs::read(path).expect("read the file");
    let err = open(&format!("sqlite:{}", path.display()))
        .err()
        .unwrap_or_else(|| panic!("{what} must be refused"));
    let StoreError::NotOurs {
        path: named,
        reason,
    } = &err
    else {
        panic!("{what} must give NotOurs, got {err:?}");
    };
    assert_eq!(named, path);
    assert!(!reason.is_empty());
    assert!(err.to_string().contains("not a tabby datastore"), "{err}");
    assert_eq!(
        std::fs::read(path).expect("read the file"),
        before,
        "{what} must be left byte-identical"
    );
}

#[test]
fn a_text_file_is_refused_and_left_untouched() {
    let dir = ScratchDir::new("not-ours-text");
    let path = dir.file("notes");
    std::fs::write(&path, "these are my notes, not a database\n").expect("write");
    assert_refused_untouched(&path, "a text file");
    let tiny = dir.file("tiny");
    std::fs::write(&tiny, "x").expect("write");
    assert_refused_untouched(&tiny, "a one-byte file");
}

#[test]
fn another_applications_sqlite_database_is_refused_and_left_untouched() {
    let dir = ScratchDir::new("not-ours-sqlite");

    let with_tables = dir.file("app");
    let conn = rusqlite::Connection::open(&with_tables).expect("create a foreign database");
    conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT); INSERT INTO accounts VALUES (1, 'x');")
        .expect("foreign schema");
    drop(conn);
    assert_refused_untouched(&with_tables, "a database with another application's tables");

    let with_wal = dir.file("wal-app");
    let conn = rusqlite::Connection::open(&with_wal).expect("create a foreign database");
    conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .expect("foreign schema");
    drop(conn);
    assert_refused_untouched(&with_wal, "a WAL-mode database of another application");

    let with_id = dir.file("app-id");
    let conn = rusqlite::Connection::open(&with_id).expect("create a foreign database");
    conn.execute_batch(
        "PRAGMA application_id = 1234; CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER);",
    )
    .expect("foreign schema");
    drop(conn);
    assert_refused_untouched(&with_id, "a database with another application id");
}

#[test]
fn a_directory_is_refused() {
    let dir = ScratchDir::new("not-ours-dir");
    let err = open(&format!("sqlite:{}", dir.path().display()))
        .err()
        .expect("a directory must be refused");
    assert!(matches!(err, StoreError::NotOurs { .. }), "{err:?}");
}

// ===== read-only datastores =====
//
// Root ignores permission bits, so as root the tests use what binds root too: the immutable
// attribute and a read-only bind mount.

/// Undoes a change to the file system when dropped, also when the test fails.
struct Restore(Vec<(String, Vec<String>)>);

impl Drop for Restore {
    fn drop(&mut self) {
        for (cmd, args) in self.0.iter().rev() {
            let _ = Command::new(cmd).args(args).status();
        }
    }
}

fn run(cmd: &str, args: &[String]) {
    let status = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(status.success(), "{cmd} {args:?} failed: {status}");
}

/// Runs `cmd args`, and `undo` when the returned guard drops.
fn change(cmd: &str, args: &[&Path], undo: (&str, &[&Path])) -> Restore {
    let strings = |paths: &[&Path]| {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    };
    let guard = Restore(vec![(undo.0.to_owned(), strings(undo.1))]);
    run(cmd, &strings(args));
    guard
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uids = s.lines().find_map(|l| l.strip_prefix("Uid:"))?.to_owned();
            uids.split_whitespace().nth(1).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Makes `file` unwritable, even for root.
fn make_file_read_only(file: &Path) -> Restore {
    if is_root() {
        change(
            "chattr",
            &[Path::new("+i"), file],
            ("chattr", &[Path::new("-i"), file]),
        )
    } else {
        change(
            "chmod",
            &[Path::new("0444"), file],
            ("chmod", &[Path::new("0644"), file]),
        )
    }
}

/// Gives a read-only view of `dir`, even for root: a read-only bind mount at `view`, or
/// (without root) `dir` itself with its permissions taken away.
fn read_only_view(dir: &Path, view: &Path) -> (PathBuf, Restore) {
    if is_root() {
        std::fs::create_dir_all(view).expect("mount point");
        let mut guard = change(
            "mount",
            &[Path::new("--bind"), dir, view],
            ("umount", &[view]),
        );
        let remount = change(
            "mount",
            &[Path::new("-o"), Path::new("remount,bind,ro"), view],
            ("true", &[]),
        );
        guard.0.extend(std::mem::take(&mut { remount }.0));
        (view.to_owned(), guard)
    } else {
        let guard = change(
            "chmod",
            &[Path::new("0555"), dir],
            ("chmod", &[Path::new("0755"), dir]),
        );
        (dir.to_owned(), guard)
    }
}

fn create_datastore_with_a_pool(path: &Path) -> Key {
    let key = Key::new("IPPool", "", "pool1");
    let store = SqliteStore::open(path).expect("open");
    store
        .create(&key, "{\"cidr\":\"192.0.2.0/24\"}")
        .expect("create");
    key
}

#[test]
fn a_read_only_file_can_be_read_but_not_written() {
    let scratch = ScratchDir::new("read-only-file");
    let path = scratch.file("tabby");
    let key = create_datastore_with_a_pool(&path);
    let _restore = make_file_read_only(&path);

    let store = SqliteStore::open(&path).expect("a read-only datastore still opens for reading");
    assert!(store.is_read_only());
    assert_eq!(
        store.get(&key).expect("reads work").map(|e| e.value),
        Some("{\"cidr\":\"192.0.2.0/24\"}".to_owned())
    );
    assert_eq!(store.list(None, None).expect("list works").entries.len(), 1);
    let mut watch = store.watch(0, WatchFilter::default()).expect("watch works");
    assert!(
        watch
            .next(Duration::from_secs(5))
            .expect("watch works")
            .is_some()
    );

    let err = store
        .update(&key, "{}", None)
        .expect_err("writes must fail");
    assert_eq!(err, StoreError::ReadOnly { path: path.clone() });
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("read-only"), "{message}");
    assert!(matches!(store.compact(1), Err(StoreError::ReadOnly { .. })));
    assert!(
        matches!(store.commit(&[]), Ok(1)),
        "an empty commit writes nothing"
    );
}

#[test]
fn a_datastore_in_a_read_only_directory_is_refused_clearly() {
    let scratch = ScratchDir::new("read-only-dir");
    let data = scratch.path().join("data");
    create_datastore_with_a_pool(&data.join("tabby.db"));
    let before = std::fs::read(data.join("tabby.db")).expect("read");
    let (view, _restore) = read_only_view(&data, &scratch.path().join("view"));

    // The datastore was closed cleanly, so its -wal and -shm files are gone, and SQLite can
    // read a WAL database only with them beside it: even reading is impossible here.
    let existing = view.join("tabby.db");
    let err = SqliteStore::open(&existing).expect_err("a datastore in a read-only directory");
    assert_eq!(
        err,
        StoreError::ReadOnly {
            path: existing.clone()
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("read-only")
            && message.contains("write access to the file and its directory"),
        "{message}"
    );

    let missing = view.join("new.db");
    let err = SqliteStore::open(&missing).expect_err("creating in a read-only directory");
    assert_eq!(
        err,
        StoreError::ReadOnly {
            path: missing.clone()
        }
    );
    assert!(!missing.exists());
    assert_eq!(std::fs::read(data.join("tabby.db")).expect("read"), before);
}

// ===== URLs =====

#[test]
fn urls_choose_the_backend() {
    let dir = ScratchDir::new("urls");
    let path = dir.path().join("nested/dirs/tabby.db");
    let store =
        open(&format!("sqlite://{}", path.display())).expect("sqlite:// with an absolute path");
    store
        .create(&Key::new("Tier", "", "default"), "{}")
        .expect("write");
    assert!(path.exists(), "the file and its directories are created");

    let err = open("etcd://127.0.0.1")
        .err()
        .expect("an etcd URL without port");
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
    let err = open("mysql://db/tabby")
        .err()
        .expect("unknown schemes are refused");
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("sqlite:PATH"), "{err}");
}
