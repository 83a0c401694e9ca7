//! Watches over the changelog.
//!
//! SQLite has no cross-process notification, so a watch polls: every [`POLL_INTERVAL`] it
//! asks its own connection for `PRAGMA data_version`, which changes when any other connection
//! (in any process) has committed, and costs no more than starting a read transaction on the
//! WAL index in shared memory. Only when it changed does the watch read the changelog. A
//! commit through the same [`super::SqliteStore`] handle also wakes its watches at once.
//!
//! Revisions are assigned under SQLite's single write lock and a commit becomes visible
//! atomically, so a reader that sees revision R sees every revision before it: reading
//! `(rev, seq)` after the watch's position, up to the revision read in the same snapshot,
//! leaves no gap.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, Row, ToSql};
use tracing::debug;

use super::{compacted_revision, connect, current_revision, sql_error};
use crate::{Entry, Event, Key, Revision, StoreError, Watch, WatchFilter};

/// How often a waiting watch checks for commits by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// The most changelog rows read at once, so that a watch far behind (or a huge commit) does
/// not load everything into memory.
pub(super) const BATCH: usize = 1024;

/// `seq` of a position at which every row of its revision has been delivered.
const WHOLE_REVISION: i64 = i64::MAX;

/// Wakes the watches of one store handle when the handle commits.
#[derive(Debug, Default)]
pub(super) struct Notifier {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl Notifier {
    fn generation(&self) -> u64 {
        *self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn notify(&self) {
        *self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
    }

    /// Waits until the generation moves past `seen`, or `timeout` passes.
    fn wait(&self, seen: u64, timeout: Duration) {
        let guard = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .changed
            .wait_timeout_while(guard, timeout, |generation| *generation == seen)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// A watch on an SQLite datastore, with its own connection.
pub(super) struct SqliteWatch {
    conn: Connection,
    path: PathBuf,
    filter: WatchFilter,
    /// The last changelog row delivered (or skipped by the filter): `(revision, seq)`.
    position: (Revision, i64),
    pending: VecDeque<Event>,
    /// `PRAGMA data_version` when the changelog was last read to its end; `None` forces a read.
    data_version: Option<i64>,
    notifier: Arc<Notifier>,
    /// Once history is lost the watch stays failed: the caller must re-list.
    failed: Option<StoreError>,
}

impl SqliteWatch {
    pub(super) fn new(
        path: &Path,
        after: Revision,
        filter: WatchFilter,
        notifier: Arc<Notifier>,
    ) -> Result<Self, StoreError> {
        // No CREATE: the store has made the file; a watch must not conjure an empty one.
        let conn = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_error(path, e))?;
        debug!(path = %path.display(), after, ?filter, "watch started");
        Ok(Self {
            conn,
            path: path.to_owned(),
            filter,
            position: (after, WHOLE_REVISION),
            pending: VecDeque::new(),
            data_version: None,
            notifier,
            failed: None,
        })
    }

    fn data_version(&self) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| sql_error(&self.path, e))
    }

    /// Reads the next batch of changes after the position into `pending`; returns whether it
    /// reached the end of the changelog.
    fn fetch(&mut self) -> Result<bool, StoreError> {
        let e = |err| sql_error(&self.path, err);
        let tx = self.conn.transaction().map_err(e)?;
        let head = current_revision(&tx).map_err(e)?;
        let compacted = compacted_revision(&tx).map_err(e)?;
        let (rev, seq) = self.position;
        // Rows after the position are gone if compaction reached the revision of the next
        // row to deliver: `rev + 1`, or `rev` itself when only part of it was delivered.
        let lost = compacted > rev || (compacted == rev && seq != WHOLE_REVISION);
        if lost {
            let err = StoreError::Compacted {
                requested: rev,
                compacted,
            };
            debug!(path = %self.path.display(), %err, "watch fell behind compaction");
            self.failed = Some(err.clone());
            return Err(err);
        }
        if (head, WHOLE_REVISION) <= self.position {
            return Ok(true);
        }
        // One statement per filter shape, each binding exactly the parameters it names.
        const COLUMNS: &str = "SELECT rev, seq, kind, namespace, name, op, value, create_rev, \
                               prev_value, prev_create_rev, prev_mod_rev FROM changelog \
                               WHERE (rev, seq) > (?1, ?2) AND rev <= ?3";
        let limit = i64::try_from(BATCH).unwrap_or(i64::MAX);
        let mut bind: Vec<&dyn ToSql> = vec![&rev, &seq, &head, &limit];
        let filter = match (&self.filter.kind, &self.filter.namespace) {
            (None, None) => "",
            (Some(kind), None) => {
                bind.push(kind);
                " AND kind = ?5"
            }
            (None, Some(namespace)) => {
                bind.push(namespace);
                " AND namespace = ?5"
            }
            (Some(kind), Some(namespace)) => {
                bind.push(kind);
                bind.push(namespace);
                " AND kind = ?5 AND namespace = ?6"
            }
        };
        let sql = format!("{COLUMNS}{filter} ORDER BY rev, seq LIMIT ?4");
        let mut stmt = tx.prepare_cached(&sql).map_err(e)?;
        let rows = stmt
            .query_map(bind.as_slice(), |row| {
                Ok((
                    row.get::<_, Revision>(0)?,
                    row.get::<_, i64>(1)?,
                    event(row)?,
                ))
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        drop(stmt);
        tx.commit().map_err(e)?;

        let complete = rows.len() < BATCH;
        self.position = match rows.last() {
            Some(&(rev, seq, _)) if !complete => (rev, seq),
            // Everything up to `head` has been seen, including rows the filter skipped.
            _ => (head, WHOLE_REVISION),
        };
        self.pending
            .extend(rows.into_iter().map(|(_, _, event)| event));
        Ok(complete)
    }
}

impl Watch for SqliteWatch {
    fn next(&mut self, timeout: Duration) -> Result<Option<Event>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if let Some(err) = &self.failed {
                return Err(err.clone());
            }
            // Read the generation and the data version before the changelog, so that a commit
            // landing after the read still moves one of them and is not slept through.
            let generation = self.notifier.generation();
            let version = self.data_version()?;
            if self.data_version != Some(version) {
                let complete = self.fetch()?;
                self.data_version = complete.then_some(version);
                if !self.pending.is_empty() || !complete {
                    continue;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.notifier
                .wait(generation, POLL_INTERVAL.min(deadline - now));
        }
    }
}

/// The event a changelog row records.
fn event(row: &Row<'_>) -> rusqlite::Result<Event> {
    let revision: Revision = row.get(0)?;
    let key = Key {
        kind: row.get(2)?,
        namespace: row.get(3)?,
        name: row.get(4)?,
    };
    let op: String = row.get(5)?;
    let prev_value: Option<String> = row.get(8)?;
    let prev = |value: String| -> rusqlite::Result<Entry> {
        Ok(Entry {
            key: key.clone(),
            value,
            create_revision: row.get(9)?,
            mod_revision: row.get(10)?,
        })
    };
    if op == "delete" {
        let Some(value) = prev_value else {
            return Err(rusqlite::Error::InvalidColumnType(
                8,
                "prev_value".to_owned(),
                rusqlite::types::Type::Null,
            ));
        };
        let prev = prev(value)?;
        return Ok(Event::Delete {
            key,
            revision,
            prev,
        });
    }
    let prev = prev_value.map(prev).transpose()?;
    Ok(Event::Put {
        entry: Entry {
            key: key.clone(),
            value: row.get(6)?,
            create_revision: row.get(7)?,
            mod_revision: revision,
        },
        prev,
    })
}
