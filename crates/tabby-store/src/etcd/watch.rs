//! Watches: a task on the store's runtime keeps an etcd watch open, converts its events and
//! hands them to the synchronous [`Watch::next`] through a channel.
//!
//! When the stream breaks (a member restarts, the connection drops, a member loses its
//! leader) the task opens a new one from the revision after the last it delivered, so the
//! consumer sees neither a gap nor a repeat. If that history was compacted meanwhile the
//! consumer gets [`StoreError::Compacted`] and re-lists.
//!
//! Each event's previous state comes from a copy of the watched range the task keeps (read
//! once at the start revision), not from etcd's `prev_kv`: etcd answers `prev_kv` with a
//! read per event per watch, and with 100 watches those reads held the members' writes to a
//! tenth of their rate (docs/benchmarks.md, "Datastore: etcd").

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{EventType, GetOptions, KvClient, WatchClient, WatchOptions};
use tracing::debug;

use super::keys::{self, Layout, prefix_end};
use super::{PAGE, Shared, backend, to_entry};
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
            state: HashMap::new(),
            loaded: false,
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
    /// The objects in the watched range at `last`, by etcd key: each event's previous state.
    state: HashMap<Vec<u8>, crate::Entry>,
    /// Whether `state` was read.
    loaded: bool,
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
        if !self.loaded && !self.load().await? {
            return Ok(false);
        }
        let options = WatchOptions::new()
            .with_range(prefix_end(&self.range))
            .with_start_revision(self.last + 1)
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
                // Already delivered (and in `state`) before the stream broke.
                if event.kv().is_none_or(|kv| kv.mod_revision() <= floor) {
                    continue;
                }
                let Some(event) = self.convert(event)? else {
                    continue;
                };
                let revision = event.revision();
                if self.filter.matches(event.key()) && self.tx.send(Ok(event)).is_err() {
                    return Err(Stop::Dropped);
                }
                self.last = revision;
                delivered = true;
            }
        }
    }

    /// Reads the watched range as it was at `last` into `state`; `Ok(false)` when etcd
    /// cannot be reached (the caller retries).
    async fn load(&mut self) -> Result<bool, Stop> {
        let mut state = HashMap::new();
        if self.last > 0 {
            let end = prefix_end(&self.range);
            let mut start = self.range.clone().into_bytes();
            loop {
                let options = GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(PAGE)
                    .with_revision(self.last);
                let resp = match self.kv.clone().get(start.clone(), Some(options)).await {
                    Ok(resp) => resp,
                    Err(err)
                        if err
                            .to_string()
                            .contains("required revision has been compacted") =>
                    {
                        let ours = self.read_compacted().await.unwrap_or(0);
                        return Err(self.compacted(ours.max(self.last)));
                    }
                    Err(err) => {
                        debug!(location = %self.location, error = %err, "etcd unreachable, the watch retries");
                        self.set_outage(Some(backend(&self.location, &err)));
                        return Ok(false);
                    }
                };
                for kv in resp.kvs() {
                    if let Some(entry) = self.entry(kv)? {
                        state.insert(kv.key().to_vec(), entry);
                    }
                }
                match resp.kvs().last() {
                    Some(last) if resp.more() => {
                        start = last.key().to_vec();
                        start.push(0);
                    }
                    _ => break,
                }
            }
        }
        self.state = state;
        self.loaded = true;
        Ok(true)
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
    /// Our event for an etcd event (`None` for a key that is not an object of ours), its
    /// previous state from `state`, which it updates.
    fn convert(&mut self, event: &etcd_client::Event) -> Result<Option<Event>, Stop> {
        let Some(kv) = event.kv() else {
            return Ok(None);
        };
        let Some(key) = self.layout.parse(kv.key()) else {
            return Ok(None);
        };
        let revision = kv.mod_revision();
        match event.event_type() {
            EventType::Put => {
                let Some(entry) = self.entry(kv)? else {
                    return Ok(None);
                };
                let prev = self.state.insert(kv.key().to_vec(), entry.clone());
                // An update of an object the copy lacks: the copy cannot be trusted, so the
                // consumer re-lists, as after a compaction.
                if prev.is_none() && kv.version() > 1 {
                    return Err(self.compacted(revision - 1));
                }
                Ok(Some(Event::Put { entry, prev }))
            }
            EventType::Delete => {
                let Some(prev) = self.state.remove(kv.key()) else {
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
