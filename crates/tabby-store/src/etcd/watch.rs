//! Watches: a task on the store's runtime keeps an etcd watch open, converts its events and
//! hands them to the synchronous [`Watch::next`] through a channel.
//!
//! When the stream breaks (a member restarts, the connection drops, a member loses its
//! leader) the task opens a new one from the revision after the last it delivered, so the
//! consumer sees neither a gap nor a repeat. If that history was compacted meanwhile the
//! consumer gets [`StoreError::Compacted`] and re-lists.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{EventType, KvClient, WatchClient, WatchOptions};
use tracing::debug;

use super::keys::{self, Layout, prefix_end};
use super::{Shared, backend, to_entry};
use crate::{Event, Revision, StoreError, Watch, WatchFilter};

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

type Item = Result<Event, StoreError>;

/// Why the task cannot reach etcd now, shared with the consumer.
type Outage = Arc<Mutex<Option<StoreError>>>;

/// An etcd watch, read synchronously.
pub(super) struct EtcdWatch {
    rx: Option<Receiver<Item>>,
    failed: Option<StoreError>,
    task: Option<tokio::task::AbortHandle>,
    outage: Outage,
    /// Keeps the runtime the task runs on alive.
    _shared: Option<Arc<Shared>>,
}

impl EtcdWatch {
    /// A watch that only reports `error`.
    pub(super) fn failed(error: StoreError) -> Self {
        Self {
            rx: None,
            failed: Some(error),
            task: None,
            outage: Outage::default(),
            _shared: None,
        }
    }

    /// Starts watching the changes after `after`; `compacted` is the compaction revision
    /// just read (the caller checked `after` against it).
    pub(super) fn start(
        shared: Arc<Shared>,
        after: Revision,
        compacted: Revision,
        filter: WatchFilter,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let outage = Outage::default();
        let task = Task {
            outage: outage.clone(),
            watch: shared.watch.clone(),
            kv: shared.kv.clone(),
            range: shared
                .layout
                .range(filter.kind.as_deref(), filter.namespace.as_deref()),
            layout: shared.layout.clone(),
            location: shared.location.clone(),
            filter,
            last: after,
            tx,
        };
        let handle = shared.handle().spawn(task.run(compacted)).abort_handle();
        Self {
            rx: Some(rx),
            failed: None,
            task: Some(handle),
            outage,
            _shared: Some(shared),
        }
    }
}

impl Drop for EtcdWatch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Watch for EtcdWatch {
    fn next(&mut self, timeout: Duration) -> Result<Option<Event>, StoreError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let Some(rx) = &self.rx else {
            return Ok(None);
        };
        let item = match rx.recv_timeout(timeout) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => return Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(StoreError::Backend {
                location: String::from("etcd"),
                message: "the watch stopped".to_owned(),
            }),
        };
        item.map(Some)
            .inspect_err(|err| self.failed = Some(err.clone()))
    }

    fn disconnected(&self) -> Option<StoreError> {
        self.outage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What stops the task: the consumer went away, or the history it needs is gone.
enum Stop {
    Dropped,
    Compacted,
}

struct Task {
    watch: WatchClient,
    kv: KvClient,
    /// The etcd key prefix watched: the filter's kind (and namespace) when it names one.
    range: String,
    layout: Layout,
    location: String,
    filter: WatchFilter,
    /// The revision of the last change delivered (or the watch's start).
    last: Revision,
    tx: Sender<Item>,
    outage: Outage,
}

impl Task {
    fn set_outage(&self, error: Option<StoreError>) {
        *self
            .outage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    async fn run(mut self, compacted: Revision) {
        let mut known = Some(compacted);
        let mut delay = Duration::from_millis(50);
        loop {
            match self.session(known.take()).await {
                Err(Stop::Dropped | Stop::Compacted) => return,
                Ok(delivered) => {
                    if delivered {
                        delay = Duration::from_millis(50);
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    /// One watch stream, until it breaks: `Ok(true)` if it delivered anything.
    async fn session(&mut self, compacted: Option<Revision>) -> Result<bool, Stop> {
        let compacted = match compacted {
            Some(c) => c,
            None => match self.read_compacted().await {
                Ok(c) => c,
                Err(err) => {
                    debug!(location = %self.location, error = %err, "etcd unreachable, the watch retries");
                    self.set_outage(Some(backend(&self.location, &err)));
                    return Ok(false);
                }
            },
        };
        if self.last < compacted {
            return Err(self.compacted(compacted));
        }
        let options = WatchOptions::new()
            .with_range(prefix_end(&self.range))
            .with_start_revision(self.last + 1)
            .with_prev_key()
            .with_progress_notify();
        let mut stream = match self.watch.watch(self.range.clone(), Some(options)).await {
            Ok(stream) => stream,
            Err(err) => {
                debug!(location = %self.location, error = %err, after = self.last, "cannot open an etcd watch, retrying");
                self.set_outage(Some(backend(&self.location, &err)));
                return Ok(false);
            }
        };
        let mut delivered = false;
        // etcd starts at `floor + 1`; a progress notification may move `last` on meanwhile, but
        // the events of one revision (one commit) must all pass.
        let floor = self.last;
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    debug!(location = %self.location, after = self.last, "etcd closed the watch, resuming");
                    return Ok(delivered);
                }
                Err(err) => {
                    debug!(location = %self.location, error = %err, after = self.last, "etcd watch broke, resuming");
                    return Ok(delivered);
                }
            };
            // Whatever etcd sends, it is reachable and the stream serves.
            self.set_outage(None);
            if resp.compact_revision() > 0 {
                // etcd keeps its compaction revision readable; tabby's own mark may be later.
                let ours = self.read_compacted().await.unwrap_or(0);
                return Err(self.compacted(ours.max(resp.compact_revision() - 1)));
            }
            if resp.canceled() {
                debug!(location = %self.location, reason = resp.cancel_reason(), "etcd cancelled the watch, resuming");
                return Ok(delivered);
            }
            if resp.events().is_empty() && !resp.created() {
                // A progress notification: every change up to its revision was sent.
                if let Some(header) = resp.header() {
                    self.last = self.last.max(header.revision());
                }
                continue;
            }
            for event in resp.events() {
                let Some(event) = self.convert(event)? else {
                    continue;
                };
                let revision = event.revision();
                if revision <= floor {
                    continue;
                }
                if self.filter.matches(event.key()) && self.tx.send(Ok(event)).is_err() {
                    return Err(Stop::Dropped);
                }
                self.last = revision;
                delivered = true;
            }
        }
    }

    async fn read_compacted(&self) -> Result<Revision, etcd_client::Error> {
        let resp = self.kv.clone().get(self.layout.compacted(), None).await?;
        Ok(resp
            .kvs()
            .first()
            .and_then(|kv| keys::parse_compacted(kv.value()))
            .unwrap_or(0))
    }

    fn compacted(&self, compacted: Revision) -> Stop {
        debug!(location = %self.location, after = self.last, compacted, "watch history compacted");
        let _ = self.tx.send(Err(StoreError::Compacted {
            requested: self.last,
            compacted,
        }));
        Stop::Compacted
    }

    /// Our event for an etcd event, `None` for a key that is not an object of ours.
    fn convert(&self, event: &etcd_client::Event) -> Result<Option<Event>, Stop> {
        let Some(kv) = event.kv() else {
            return Ok(None);
        };
        let Some(key) = self.layout.parse(kv.key()) else {
            return Ok(None);
        };
        let prev = match event.prev_kv() {
            Some(prev) => self.entry(prev)?,
            None => None,
        };
        let revision = kv.mod_revision();
        match event.event_type() {
            EventType::Put => {
                // An update whose previous state etcd could not send was compacted away.
                if prev.is_none() && kv.version() > 1 {
                    return Err(self.compacted(revision - 1));
                }
                let Some(entry) = self.entry(kv)? else {
                    return Ok(None);
                };
                Ok(Some(Event::Put { entry, prev }))
            }
            EventType::Delete => {
                let Some(prev) = prev else {
                    return Err(self.compacted(revision - 1));
                };
                Ok(Some(Event::Delete {
                    key,
                    revision,
                    prev,
                }))
            }
        }
    }

    fn entry(&self, kv: &etcd_client::KeyValue) -> Result<Option<crate::Entry>, Stop> {
        to_entry(&self.layout, kv, &self.location).map_err(|err| {
            let _ = self.tx.send(Err(err));
            Stop::Dropped
        })
    }
}
