//! The agent loop: resync when needed, write what is pending, wait for changes; every failure
//! is retried with backoff while the kernel keeps the last state written.

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tabby_dataplane::{Config, Netlink, NetlinkError, NftCli, RtNetlink};
use tabby_store::{Datastore, StoreError};

use crate::backoff::Backoff;
use crate::bgp::{Bgp, Routing, StatusBoard};
use crate::dataplane::{Dataplane, DataplaneError};
use crate::lock::{LockError, NodeLock};
use crate::metrics::Metrics;
use crate::syncer::{SyncError, Syncer};

/// The longest the loop waits for datastore changes before it looks at pending writes again.
const POLL: Duration = Duration::from_millis(500);
/// The same wait while the BGP speaker runs: learned routes reach the kernel at most this late.
const BGP_POLL: Duration = Duration::from_millis(50);

/// How `tabby node run` was asked to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node name (as WorkloadEndpoints' `spec.node` spells it).
    pub node: String,
    /// Where `/livez`, `/readyz` and `/metrics` answer.
    pub metrics_addr: SocketAddr,
    /// Where the per-node lock file goes (`/run/tabby`).
    pub lock_dir: PathBuf,
    /// Who programs routes to other nodes' workloads.
    pub routing: Routing,
    /// The namespace whose Secrets hold BGP passwords (Calico: calico-node's namespace;
    /// default [`crate::bgp::peers::DEFAULT_SECRET_NAMESPACE`]).
    pub bgp_secret_namespace: String,
}

/// The agent could not start (once running, it retries rather than fails).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Another agent runs for this node.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The health address could not be bound.
    #[error("cannot listen on {addr} for health and metrics: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The netlink socket could not be opened.
    #[error("cannot open netlink: {0}")]
    Netlink(#[source] NetlinkError),
    /// The datastore URL cannot work, whatever the agent waits for.
    #[error(transparent)]
    Datastore(StoreError),
}

/// One node's syncer and dataplane, stepped by [`Agent::step`].
#[derive(Debug)]
pub struct Agent<L> {
    syncer: Syncer,
    dataplane: Dataplane<L>,
    metrics: Arc<Metrics>,
    store_backoff: Backoff,
    dp_backoff: Backoff,
    /// After a failed write: not before this instant.
    dp_retry_at: Option<Instant>,
    bgp: Option<Bgp>,
}

impl<L: Netlink> Agent<L> {
    /// An agent that has read nothing yet.
    pub fn new(syncer: Syncer, dataplane: Dataplane<L>, metrics: Arc<Metrics>) -> Self {
        Self {
            syncer,
            dataplane,
            metrics,
            store_backoff: Backoff::default(),
            dp_backoff: Backoff::default(),
            dp_retry_at: None,
            bgp: None,
        }
    }

    /// Runs BGP too (the speaker starts once the resources ask for it).
    pub fn with_bgp(mut self, bgp: Bgp) -> Self {
        // Learned routes of a previous run stay until BGP has resynchronised (or is off).
        self.dataplane.hold_stale();
        self.bgp = Some(bgp);
        self
    }

    /// Uses `backoff` for both datastore and dataplane retries (tests use short ones).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.store_backoff = backoff.clone();
        self.dp_backoff = backoff;
        self
    }

    /// One round: resync if not in sync, write what is pending (unless a failed write is
    /// still backing off), then wait up to `wait` for changes and take them in.
    pub fn step(&mut self, rt: &tokio::runtime::Runtime, wait: Duration) {
        if !self.syncer.is_synced() {
            match self.syncer.resync() {
                Ok(deltas) => {
                    // The new engine's deltas describe everything from nothing: the
                    // dataplane starts empty, so its next write replaces the table whole.
                    self.dataplane.reset();
                    self.dataplane.apply(&deltas);
                    if let Some(bgp) = &mut self.bgp {
                        bgp.observe(&deltas, true);
                    }
                    self.dp_retry_at = None;
                    self.store_backoff.reset();
                    self.metrics.set_in_sync(true);
                    self.metrics.resynced(self.syncer.revision());
                }
                Err(err) => {
                    self.store_failed(&err);
                    return;
                }
            }
        }
        if let Some(bgp) = &mut self.bgp {
            bgp.reconcile(self.syncer.bgp_inputs(), &mut self.dataplane);
        }
        let now = Instant::now();
        if self.dataplane.has_pending() && self.dp_retry_at.is_none_or(|t| now >= t) {
            self.write(rt);
        }
        if !self.dataplane.has_pending() {
            // Everything up to this revision is in the kernel: what a waiting caller (the
            // lab, a benchmark) reads to know a change is enforced.
            self.metrics.set_programmed(self.syncer.revision());
        }
        let wait = match self.dp_retry_at {
            Some(t) if self.dataplane.has_pending() => wait.min(t.saturating_duration_since(now)),
            _ => wait,
        };
        let wait = match &self.bgp {
            Some(b) if b.running() => wait.min(BGP_POLL),
            _ => wait,
        };
        match self.syncer.poll(wait) {
            Ok(deltas) => {
                self.dataplane.apply(&deltas);
                if let Some(bgp) = &mut self.bgp {
                    bgp.observe(&deltas, false);
                }
                self.metrics.set_revision(self.syncer.revision());
                self.watch_health();
            }
            Err(err @ SyncError::Compacted { revision }) => {
                tracing::info!(revision, "watch compacted; resyncing");
                self.metrics.error("compacted");
                self.metrics.datastore_lost(&err.to_string(), None);
            }
            Err(err) => self.store_failed(&err),
        }
    }

    fn store_failed(&mut self, err: &SyncError) {
        let delay = self.store_backoff.next_delay();
        tracing::warn!(error = %err, retry_in = ?delay, "datastore unavailable; keeping the last programmed state");
        self.metrics.error("datastore");
        self.metrics.datastore_lost(&err.to_string(), Some(delay));
        std::thread::sleep(delay);
    }

    /// A watch that retries by itself (etcd) says whether it reaches the datastore: the agent
    /// is not in sync (nor ready) while it does not, and keeps enforcing the last state.
    fn watch_health(&mut self) {
        match self.syncer.disconnected() {
            Some(err) => {
                if self.metrics.in_sync() {
                    tracing::warn!(error = %err, "datastore unreachable; keeping the last programmed state, the watch retries");
                    self.metrics.error("datastore");
                }
                self.metrics.datastore_lost(&err.to_string(), None);
            }
            None if !self.metrics.in_sync() => {
                tracing::info!(
                    revision = self.syncer.revision(),
                    "datastore reachable again; the watch resumed"
                );
                self.metrics.set_in_sync(true);
            }
            None => {}
        }
    }

    fn write(&mut self, rt: &tokio::runtime::Runtime) {
        match rt.block_on(self.dataplane.sync()) {
            Ok(written) => {
                tracing::debug!(?written, "dataplane written");
                self.metrics.applied(written.took);
                self.dp_backoff.reset();
                self.dp_retry_at = None;
                let stats = self.syncer.engine().stats();
                self.metrics.set_sizes(
                    stats.local_endpoints,
                    stats.active_policies,
                    stats.ip_sets,
                    self.dataplane.routes(),
                );
            }
            Err(err) => {
                let delay = self.dp_backoff.next_delay();
                tracing::warn!(error = %err, retry_in = ?delay, "dataplane write failed; retrying");
                self.metrics.error(match err {
                    DataplaneError::Nft(_) => "nft",
                    DataplaneError::Netlink(_) => "routes",
                });
                self.dp_retry_at = Some(Instant::now() + delay);
            }
        }
    }

    /// The dataplane, to inspect.
    pub fn dataplane(&self) -> &Dataplane<L> {
        &self.dataplane
    }
}

/// Runs the agent for `config.node` against `store` until the process ends: takes the node
/// lock, serves health and metrics, then steps forever in the current network namespace.
pub fn run(config: &AgentConfig, store: Arc<dyn Datastore>) -> Result<(), AgentError> {
    run_opening(config, &mut || Ok(store.clone()))
}

/// Like [`run`], opening the datastore with `open` once health and `/status` answer: until it
/// opens they say why not, and it is retried with capped backoff. Only an invalid URL
/// ([`StoreError::InvalidUrl`]) ends the agent, before anything is programmed.
pub fn run_opening(
    config: &AgentConfig,
    open: &mut dyn FnMut() -> Result<Arc<dyn Datastore>, StoreError>,
) -> Result<(), AgentError> {
    let span = tracing::info_span!("agent", node = %config.node);
    let _entered = span.enter();
    let lock = NodeLock::acquire(&config.lock_dir, &config.node)?;
    tracing::info!(lock = %lock.path().display(), "node lock taken");
    let metrics = Arc::new(Metrics::default());

    // Health answers from its own thread, so a long datastore wait or nft run never delays it.
    let std_listener =
        std::net::TcpListener::bind(config.metrics_addr).map_err(|error| AgentError::Listen {
            addr: config.metrics_addr,
            error,
        })?;
    std_listener
        .set_nonblocking(true)
        .map_err(AgentError::Runtime)?;
    let http_metrics = metrics.clone();
    let board = Arc::new(StatusBoard::new(config.node.clone()));
    let http_board = board.clone();
    let http_rt = current_thread()?;
    std::thread::Builder::new()
        .name("tabby-health".to_owned())
        .spawn(move || {
            http_rt.block_on(async move {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => crate::http::serve(l, http_metrics, http_board).await,
                    Err(err) => tracing::error!(error = %err, "health listener failed"),
                }
            });
        })
        .map_err(AgentError::Runtime)?;
    tracing::info!(addr = %config.metrics_addr, "serving /livez, /readyz and /metrics");
    let store = open_store(open, &metrics)?;

    let rt = current_thread()?;
    let netlink = {
        let _in_rt = rt.enter();
        RtNetlink::new().map_err(AgentError::Netlink)?
    };
    let dataplane = Dataplane::new(Config::default(), Box::new(NftCli::new()), netlink);
    let bgp = Bgp::new(config.node.clone(), config.routing, board)
        .with_secret_namespace(config.bgp_secret_namespace.clone());
    let mut agent =
        Agent::new(Syncer::new(store, config.node.clone()), dataplane, metrics).with_bgp(bgp);
    loop {
        agent.step(&rt, POLL);
    }
}

/// Opens the datastore, retrying with backoff while `/readyz` and `/status` carry the error.
fn open_store(
    open: &mut dyn FnMut() -> Result<Arc<dyn Datastore>, StoreError>,
    metrics: &Metrics,
) -> Result<Arc<dyn Datastore>, AgentError> {
    let mut backoff = Backoff::default();
    loop {
        match open() {
            Ok(store) => return Ok(store),
            Err(err @ StoreError::InvalidUrl { .. }) => return Err(AgentError::Datastore(err)),
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %err, retry_in = ?delay, "cannot open the datastore; retrying");
                metrics.error("datastore");
                metrics.datastore_lost(&format!("cannot open the datastore: {err}"), Some(delay));
                std::thread::sleep(delay);
            }
        }
    }
}

fn current_thread() -> Result<tokio::runtime::Runtime, AgentError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(AgentError::Runtime)
}
