//! The SQLite backend: one file that many processes (the CLI, every agent of a lab, every CNI
//! call) share at once.
//!
//! The file runs in WAL mode so that readers never block the writer. Every write transaction
//! starts with `BEGIN IMMEDIATE`, so a writer takes the write lock before it reads and two
//! writers never deadlock upgrading read locks; the next revision is read and bumped inside
//! that lock, which serialises revisions across processes. Each revision's changes also go to
//! a changelog, which is what watches read: a watch in any process polls for new commits
//! (`PRAGMA data_version`, every 2 ms) and reads the changelog after its position.
//!
//! The file is marked with tabby's `application_id` and a schema version, and a file that is
//! not ours (not SQLite, or another application's database) is refused without being
//! modified.

mod watch;

#[cfg(test)]
mod tests;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use tracing::debug;

use self::watch::{Notifier, SqliteWatch};
use crate::{Datastore, Entry, Key, Listing, Op, Revision, StoreError, Watch, WatchFilter};

/// `PRAGMA application_id` of a tabby datastore: "TABY" in ASCII.
pub const APPLICATION_ID: i32 = 0x5441_4259;

/// The layout of the tables this build reads and writes, kept in the `meta` table.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a write waits for another process's write transaction before giving up. Writes
/// are short; this covers a 10,000-op commit on a slow disk with room to spare.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Created once, in the transaction that claims the file.
///
/// `objects` holds the current state. `changelog` holds every change by revision, `seq` being
/// the op's position within its commit; `value`/`create_rev` describe the object after a put,
/// `prev_*` the object before the change (NULL when a put created it). `meta` holds
/// `schema_version`, `revision` (the last revision written; objects and changelog cannot tell
/// it once deletes and compaction have run) and `compacted` (changelog rows up to it are gone).
const SCHEMA: &str = "
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE objects (
    kind       TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev    INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE changelog (
    rev             INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    namespace       TEXT NOT NULL,
    name            TEXT NOT NULL,
    op              TEXT NOT NULL CHECK (op IN ('put', 'delete')),
    value           TEXT,
    create_rev      INTEGER,
    prev_value      TEXT,
    prev_create_rev INTEGER,
    prev_mod_rev    INTEGER,
    PRIMARY KEY (rev, seq)
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
";

/// A datastore in one SQLite file.
///
/// One connection serves all threads of this handle, one at a time; each [`Watch`] opens its
/// own connection so that waiting for changes never holds up reads and writes.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// SQLite opened the file read-only (the file or its directory cannot be written).
    read_only: bool,
    /// Wakes this handle's watches as soon as it commits, ahead of their next poll.
    notifier: Arc<Notifier>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the datastore at `path`, creating the file and its directory if needed.
    ///
    /// [`StoreError::NotOurs`] for a file that is not a tabby datastore (it is left
    /// untouched). A datastore that can only be read opens; its writes then fail with
    /// [`StoreError::ReadOnly`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| match write_error(dir, &e) {
                StoreError::Io { path, message } => StoreError::Io {
                    path,
                    message: format!("cannot create the datastore's folder: {message}"),
                },
                other => other,
            })?;
        }
        probe(&path)?;

        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let existed = path.exists();
        let mut conn = connect(&path, flags).map_err(|err| {
            // The directory exists (made above), so failing to create the file in it means
            // the directory cannot be written.
            if !existed && has_code(&err, ErrorCode::CannotOpen) {
                StoreError::ReadOnly { path: path.clone() }
            } else {
                sql_error(&path, err)
            }
        })?;
        let e = |err| sql_error(&path, err);
        // SQLite falls back to read-only when the OS refuses write access to the file.
        let read_only = conn.is_readonly(rusqlite::MAIN_DB).map_err(e)?;
        let app_id = application_id(&conn).map_err(|err| {
            // A read-only WAL database can only be read when its -wal and -shm files exist or
            // can be created; in a read-only directory they usually cannot.
            if read_only && has_code(&err, ErrorCode::CannotOpen) {
                StoreError::ReadOnly { path: path.clone() }
            } else {
                e(err)
            }
        })?;
        let created = if app_id == APPLICATION_ID {
            if !read_only {
                ensure_wal(&conn, &path)?;
            }
            false
        } else if read_only {
            return Err(StoreError::ReadOnly { path });
        } else {
            ensure_wal(&conn, &path)?;
            initialise(&mut conn, &path)?
        };

        let version: Option<i64> = conn
            .query_row(
                "SELECT value FROM meta WHERE name = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        match version {
            Some(SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(StoreError::UnsupportedSchema {
                    path,
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            None => {
                return Err(StoreError::NotOurs {
                    path,
                    reason: "it carries tabby's application id but has no schema version"
                        .to_owned(),
                });
            }
        }
        // Watch wakeups and IPAM decisions act on a commit as soon as it is visible, so a
        // commit must survive power loss too: sync the WAL on every commit.
        conn.pragma_update(None, "synchronous", "FULL").map_err(e)?;
        conn.set_prepared_statement_cache_capacity(32);
        debug!(path = %path.display(), created, read_only, "opened sqlite datastore");
        Ok(Self {
            path,
            conn: Mutex::new(conn),
            read_only,
            notifier: Arc::default(),
        })
    }

    /// The datastore's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file could only be opened for reading; every write then fails with
    /// [`StoreError::ReadOnly`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-transaction rolled the transaction back when it unwound, so the
        // connection is still sound.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |err| sql_error(&self.path, err)
    }

    /// Runs `f` in a write transaction and commits if it succeeds.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
            });
        }
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err())?;
        let out = f(&tx)?;
        tx.commit().map_err(self.err())?;
        drop(conn);
        self.notifier.notify();
        Ok(out)
    }

    fn apply(&self, tx: &Transaction<'_>, ops: &[Op]) -> Result<Revision, StoreError> {
        let e = self.err();
        let rev: Revision = tx
            .prepare_cached(
                "UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value",
            )
            .map_err(&e)?
            .query_row([], |r| r.get(0))
            .map_err(&e)?;
        let mut select = tx
            .prepare_cached(
                "SELECT value, create_rev, mod_rev FROM objects \
                 WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            )
            .map_err(&e)?;
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO objects (kind, namespace, name, value, create_rev, mod_rev) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
                 ON CONFLICT (kind, namespace, name) \
                 DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev",
            )
            .map_err(&e)?;
        let mut remove = tx
            .prepare_cached("DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3")
            .map_err(&e)?;
        let mut log = tx
            .prepare_cached(
                "INSERT INTO changelog (rev, seq, kind, namespace, name, op, value, create_rev, \
                 prev_value, prev_create_rev, prev_mod_rev) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(&e)?;

        for (index, op) in ops.iter().enumerate() {
            let key = op.key();
            let failed = |error| StoreError::OpFailed {
                index,
                error: Box::new(error),
            };
            let current: Option<(String, Revision, Revision)> = select
                .query_row(params![key.kind, key.namespace, key.name], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
                .map_err(&e)?;
            let mod_rev = current.as_ref().map(|c| c.2);
            let check = |expect: Option<Revision>| match (expect, mod_rev) {
                (Some(expected), actual) if actual != Some(expected) => {
                    Err(failed(StoreError::Conflict {
                        key: key.clone(),
                        expected,
                        actual,
                    }))
                }
                (None, None) => Err(failed(StoreError::NotFound { key: key.clone() })),
                _ => Ok(()),
            };
            let new_value = match op {
                Op::Create { value, .. } => {
                    if current.is_some() {
                        return Err(failed(StoreError::AlreadyExists { key: key.clone() }));
                    }
                    Some(value)
                }
                Op::Update { value, expect, .. } => {
                    check(*expect)?;
                    Some(value)
                }
                Op::Put { value, .. } => Some(value),
                Op::Delete { expect, .. } => {
                    check(*expect)?;
                    None
                }
            };
            let (prev_value, prev_create, prev_mod) = match current {
                Some((v, c, m)) => (Some(v), Some(c), Some(m)),
                None => (None, None, None),
            };
            let seq = i64::try_from(index).unwrap_or(i64::MAX);
            // The changelog row differs between a put and a delete only in its op, value and
            // create revision.
            let (op_name, create_rev) = match new_value {
                Some(value) => {
                    upsert
                        .execute(params![key.kind, key.namespace, key.name, value, rev])
                        .map_err(&e)?;
                    ("put", Some(prev_create.unwrap_or(rev)))
                }
                None => {
                    remove
                        .execute(params![key.kind, key.namespace, key.name])
                        .map_err(&e)?;
                    ("delete", None)
                }
            };
            log.execute(params![
                rev,
                seq,
                key.kind,
                key.namespace,
                key.name,
                op_name,
                new_value,
                create_rev,
                prev_value,
                prev_create,
                prev_mod
            ])
            .map_err(&e)?;
        }
        Ok(rev)
    }
}

impl Datastore for SqliteStore {
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT value, create_rev, mod_rev FROM objects \
                 WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            )
            .map_err(self.err())?;
        stmt.query_row(params![key.kind, key.namespace, key.name], |r| {
            Ok(Entry {
                key: key.clone(),
                value: r.get(0)?,
                create_revision: r.get(1)?,
                mod_revision: r.get(2)?,
            })
        })
        .optional()
        .map_err(self.err())
    }

    fn list(&self, kind: Option<&str>, namespace: Option<&str>) -> Result<Listing, StoreError> {
        let mut conn = self.lock();
        // One read transaction, so that the revision is exactly the state listed.
        let tx = conn.transaction().map_err(self.err())?;
        let revision = current_revision(&tx).map_err(self.err())?;
        // One statement per filter shape, so that SQLite can use the primary key's order.
        let sql = match (kind, namespace) {
            (None, None) => {
                "SELECT kind, namespace, name, value, create_rev, mod_rev FROM objects \
                             ORDER BY kind, namespace, name"
            }
            (Some(_), None) => {
                "SELECT kind, namespace, name, value, create_rev, mod_rev FROM objects \
                                WHERE kind = ?1 ORDER BY kind, namespace, name"
            }
            (None, Some(_)) => {
                "SELECT kind, namespace, name, value, create_rev, mod_rev FROM objects \
                                WHERE namespace = ?2 ORDER BY kind, namespace, name"
            }
            (Some(_), Some(_)) => {
                "SELECT kind, namespace, name, value, create_rev, mod_rev FROM objects \
                                   WHERE kind = ?1 AND namespace = ?2 ORDER BY kind, namespace, name"
            }
        };
        let mut stmt = tx.prepare_cached(sql).map_err(self.err())?;
        let mut bind = Vec::new();
        if let Some(kind) = kind {
            bind.push((1, kind));
        }
        if let Some(namespace) = namespace {
            bind.push((2, namespace));
        }
        for (index, value) in bind {
            stmt.raw_bind_parameter(index, value).map_err(self.err())?;
        }
        let mut rows = stmt.raw_query();
        let mut entries = Vec::new();
        while let Some(row) = rows.next().map_err(self.err())? {
            entries.push(Entry {
                key: Key {
                    kind: row.get(0).map_err(self.err())?,
                    namespace: row.get(1).map_err(self.err())?,
                    name: row.get(2).map_err(self.err())?,
                },
                value: row.get(3).map_err(self.err())?,
                create_revision: row.get(4).map_err(self.err())?,
                mod_revision: row.get(5).map_err(self.err())?,
            });
        }
        drop(rows);
        drop(stmt);
        tx.commit().map_err(self.err())?;
        Ok(Listing { entries, revision })
    }

    fn commit(&self, ops: &[Op]) -> Result<Revision, StoreError> {
        crate::validate_ops(ops)?;
        if ops.is_empty() {
            return self.revision();
        }
        let rev = self.write(|tx| self.apply(tx, ops))?;
        debug!(path = %self.path.display(), rev, ops = ops.len(), "committed");
        Ok(rev)
    }

    fn watch(&self, after: Revision, filter: WatchFilter) -> Result<Box<dyn Watch>, StoreError> {
        let watch = SqliteWatch::new(&self.path, after, filter, Arc::clone(&self.notifier))?;
        Ok(Box::new(watch))
    }

    fn compact(&self, up_to: Revision) -> Result<(), StoreError> {
        let removed = self.write(|tx| {
            let e = self.err();
            let current = current_revision(tx).map_err(&e)?;
            if up_to > current {
                return Err(StoreError::FutureRevision {
                    requested: up_to,
                    current,
                });
            }
            if up_to <= compacted_revision(tx).map_err(&e)? {
                return Ok(0);
            }
            let removed = tx
                .execute("DELETE FROM changelog WHERE rev <= ?1", [up_to])
                .map_err(&e)?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
                [up_to],
            )
            .map_err(&e)?;
            Ok(removed)
        })?;
        debug!(path = %self.path.display(), up_to, removed, "compacted");
        Ok(())
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        current_revision(&self.lock()).map_err(self.err())
    }
}

fn current_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = 'revision'")?
        .query_row([], |r| r.get(0))
}

fn compacted_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = 'compacted'")?
        .query_row([], |r| r.get(0))
}

fn application_id(conn: &Connection) -> rusqlite::Result<i32> {
    conn.pragma_query_value(None, "application_id", |r| r.get(0))
}

/// Opens a connection with the lock timeout every connection needs.
fn connect(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Whether SQLite failed with this primary result code.
fn has_code(err: &rusqlite::Error, code: ErrorCode) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(failure, _) if failure.code == code)
}

/// Decides from the outside whether an existing file may be opened as ours, before anything
/// could write to it: not SQLite, or another application's database, is refused.
fn probe(path: &Path) -> Result<(), StoreError> {
    let not_ours = |reason: String| StoreError::NotOurs {
        path: path.to_owned(),
        reason,
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error(path, &err)),
    };
    if !meta.is_file() {
        return Err(not_ours("it is not a regular file".to_owned()));
    }
    if meta.len() == 0 {
        // SQLite treats an empty file as an empty database; nothing is lost by claiming it.
        return Ok(());
    }
    let mut header = Vec::with_capacity(100);
    fs::File::open(path)
        .and_then(|f| f.take(100).read_to_end(&mut header))
        .map_err(|err| io_error(path, &err))?;
    if !header.starts_with(SQLITE_MAGIC) {
        return Err(not_ours("it is not an SQLite database".to_owned()));
    }
    if let Some(id) = header.get(68..72) {
        let id = i32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        if id == APPLICATION_ID {
            return Ok(());
        }
        if id != 0 {
            return Err(not_ours(format!(
                "it is an SQLite database of another application (application_id {id:#010x})"
            )));
        }
    }
    // Application id 0 on disk: a foreign database, an empty one, or ours with its first page
    // still only in the WAL. Ask SQLite, read-only, so that not even a hot journal of a
    // foreign database is rolled back.
    let e = |err| sql_error(path, err);
    let conn = connect(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(e)?;
    let id = application_id(&conn).map_err(e)?;
    if id == APPLICATION_ID {
        return Ok(());
    }
    if id != 0 {
        return Err(not_ours(format!(
            "it is an SQLite database of another application (application_id {id:#010x})"
        )));
    }
    let names = schema_objects(&conn).map_err(e)?;
    if !names.is_empty() {
        return Err(not_ours(format!(
            "it is an SQLite database of another application (it holds {})",
            names.join(", ")
        )));
    }
    Ok(())
}

/// The names of the first few tables, indexes, views and triggers in a database.
fn schema_objects(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT type || ' ' || name FROM sqlite_schema ORDER BY name LIMIT 5")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

fn ensure_wal(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let e = |err| sql_error(path, err);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .map_err(e)?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(e)?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(StoreError::Backend {
            location: path.display().to_string(),
            message: format!("cannot switch the database to WAL mode (it stays in {mode} mode)"),
        })
    }
}

/// Claims an empty database: creates the tables and sets the application id in one
/// transaction, so that another process sees either nothing or all of it. Returns whether
/// this call did it (another process may have been first).
fn initialise(conn: &mut Connection, path: &Path) -> Result<bool, StoreError> {
    let e = |err| sql_error(path, err);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(e)?;
    let id = application_id(&tx).map_err(e)?;
    if id == APPLICATION_ID {
        return Ok(false);
    }
    let names = schema_objects(&tx).map_err(e)?;
    if id != 0 || !names.is_empty() {
        return Err(StoreError::NotOurs {
            path: path.to_owned(),
            reason: format!(
                "another application claimed it first (it holds {})",
                names.join(", ")
            ),
        });
    }
    tx.execute_batch(SCHEMA).map_err(e)?;
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('schema_version', ?1)",
        [SCHEMA_VERSION],
    )
    .map_err(e)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(e)?;
    tx.commit().map_err(e)?;
    Ok(true)
}

fn io_error(path: &Path, err: &io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        message: err.to_string(),
    }
}

/// Like [`io_error`], for a failure to write: a refusal then means the place is read-only.
fn write_error(path: &Path, err: &io::Error) -> StoreError {
    match err.kind() {
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied => {
            StoreError::ReadOnly {
                path: path.to_owned(),
            }
        }
        _ => io_error(path, err),
    }
}

fn sql_error(path: &Path, err: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, _) = &err {
        match failure.code {
            ErrorCode::ReadOnly => {
                return StoreError::ReadOnly {
                    path: path.to_owned(),
                };
            }
            ErrorCode::NotADatabase => {
                return StoreError::NotOurs {
                    path: path.to_owned(),
                    reason: "it is not an SQLite database".to_owned(),
                };
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return StoreError::Backend {
                    location: path.display().to_string(),
                    message: format!(
                        "another process held the database lock for more than {}s: {err}",
                        BUSY_TIMEOUT.as_secs()
                    ),
                };
            }
            _ => {}
        }
    }
    StoreError::Backend {
        location: path.display().to_string(),
        message: err.to_string(),
    }
}
