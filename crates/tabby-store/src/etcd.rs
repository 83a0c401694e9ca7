//! The etcd backend: one etcd cluster (v3 API) shared by every host of an installation.
//!
//! Revisions are etcd's own, so they are cluster-wide: writes of other installations under
//! other prefixes count too. Compare-and-swap is an etcd transaction comparing the key's
//! `mod_revision`; a commit is one transaction (its compares, then all writes, or else a read
//! of every key so the failing op can be named). Listings are paged at one revision.
//!
//! The [`Datastore`] trait is synchronous and etcd's client is async: each store owns one
//! small tokio runtime, every call runs as a task on it and the caller's thread waits for the
//! answer, so callers may be plain threads or sit inside another runtime. Watches are tasks
//! that feed a channel and reconnect from the last revision they delivered.
//!
//! Compaction: etcd compaction is cluster-wide and keeps revision `R` itself readable, while
//! [`Datastore::compact`] discards `R` too. So tabby also records the revision it compacted to
//! under the prefix and refuses watches from before it, exactly as the SQLite backend does.
//!
//! Must not: retry a write whose fate is unknown (a CAS retried after a lost answer would see
//! its own write as a conflict), or touch keys outside its prefix other than by compaction.

mod config;
mod keys;
pub mod server;
mod watch;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, CompactionOptions, Compare, CompareOp, ConnectOptions, GetOptions,
    Identity, KeyValue, KvClient, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchClient,
};
use tracing::debug;

pub use self::config::{DEFAULT_PREFIX, EtcdConfig, TlsFiles};
use self::keys::{Layout, prefix_end};
use self::watch::EtcdWatch;
use crate::{Datastore, Entry, Key, Listing, Op, Revision, StoreError, Watch, WatchFilter};

/// How long one request may take before the store gives up on it. A leader election takes
/// about a second; a cluster without quorum never answers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long opening waits for a first answer; unreachable endpoints are then diagnosed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening retries connection failures (one member of several may be down).
const OPEN_RETRY: Duration = Duration::from_secs(2);

/// How long reads keep retrying on errors that leave no doubt (no leader, unreachable).
const READ_RETRY: Duration = Duration::from_secs(10);

/// Objects per page of a listing.
const PAGE: i64 = 1000;

/// The largest message the client accepts: a 10,000-op commit's watch response is several
/// megabytes, above gRPC's default of 4 MiB.
const MAX_MESSAGE: usize = 256 << 20;

/// A datastore under one key prefix of an etcd cluster.
pub struct EtcdStore {
    shared: Arc<Shared>,
}

/// What the store and its watches share; the runtime lives until the last of them is gone.
struct Shared {
    runtime: Option<tokio::runtime::Runtime>,
    kv: KvClient,
    watch: WatchClient,
    layout: Layout,
    /// The URL without options, for messages.
    location: String,
    prefix: String,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks finish, which is not allowed when the
        // last handle goes away inside someone else's async context.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("location", &self.shared.location)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime is only taken on drop")
            .handle()
    }

    /// Runs `fut` on the store's runtime and waits for it, with the request timeout.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run_for(REQUEST_TIMEOUT, fut)
    }

    fn run_for<T: Send + 'static>(
        &self,
        limit: Duration,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let location = self.location.clone();
        self.handle().spawn(async move {
            let result = match tokio::time::timeout(limit, fut).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Backend {
                    location,
                    message: format!(
                        "no answer from etcd within {limit:?} (is a majority of its members up and reachable?)"
                    ),
                }),
            };
            let _ = tx.send(result);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Backend {
                location: self.location.clone(),
                message: "the etcd client stopped".to_owned(),
            })
        })
    }

    /// Runs a read, retrying while etcd is certainly not serving (no leader, unreachable).
    fn read<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(KvClient) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send,
    {
        let kv = self.kv.clone();
        let location = self.location.clone();
        self.run_for(READ_RETRY + REQUEST_TIMEOUT, async move {
            let started = Instant::now();
            let mut delay = Duration::from_millis(50);
            loop {
                match f(kv.clone()).await {
                    Ok(v) => return Ok(v),
                    Err(err) if is_transient(&err) && started.elapsed() < READ_RETRY => {
                        debug!(%location, error = %err, "etcd read failed, retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_millis(500));
                    }
                    Err(err) => return Err(backend(&location, &err)),
                }
            }
        })
    }

    /// Runs a write once: its outcome is unknown when the answer is lost, so only the caller
    /// can decide (by reading) whether to try again.
    fn write(&self, txn: Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        let mut kv = self.kv.clone();
        let location = self.location.clone();
        self.run(async move {
            // Refused connections mean the request never left; those alone are safe to repeat.
            let started = Instant::now();
            loop {
                match kv.txn(txn.clone()).await {
                    Err(err) if is_not_sent(&err) && started.elapsed() < READ_RETRY => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => return other.map_err(|e| backend(&location, &e)),
                }
            }
        })
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        let key = self.layout.schema();
        self.read(move |mut kv| {
            let key = key.clone();
            async move { kv.get(key, None).await }
        })
        .map(|resp| header_revision(resp.header()))
    }

    /// The revision tabby compacted this datastore to, or 0.
    fn compacted(&self) -> Result<Revision, StoreError> {
        let key = self.layout.compacted();
        let resp = self.read(move |mut kv| {
            let key = key.clone();
            async move { kv.get(key, None).await }
        })?;
        Ok(resp
            .kvs()
            .first()
            .and_then(|kv| keys::parse_compacted(kv.value()))
            .unwrap_or(0))
    }
}

/// The revision in a response header (0 when missing, which etcd never does).
fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, etcd_client::ResponseHeader::revision)
}

/// Errors after which etcd certainly did not apply a read, and that go away by themselves.
fn is_transient(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code() as i32,
            GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED
        ),
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// Whether etcd itself answered with this error (as opposed to the connection failing).
fn is_from_server(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            status.message().starts_with("etcdserver:")
                || matches!(status.code() as i32, 3 | 7 | 8 | 9 | 11 | 16)
        }
        _ => false,
    }
}

/// Errors that mean a request was never delivered (the connection was refused).
fn is_not_sent(err: &etcd_client::Error) -> bool {
    let text = match err {
        etcd_client::Error::GRpcStatus(status) => format!("{status:?}"),
        etcd_client::Error::TransportError(e) => format!("{e:?}"),
        _ => return false,
    };
    text.contains("Connection refused") || text.contains("tcp connect error")
}

/// gRPC status codes (tonic's `Code` discriminants).
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

/// A backend error naming the datastore and, where etcd's text is terse, what to do.
fn backend(location: &str, err: &etcd_client::Error) -> StoreError {
    let detail = match err {
        etcd_client::Error::GRpcStatus(status) => status.message().to_owned(),
        other => error_chain(other),
    };
    let hint = if detail.contains("too many operations in txn request") {
        " (the commit has more ops than the members' --max-txn-ops allows, 128 by default; raise it)"
    } else if detail.contains("request is too large") {
        " (the commit is larger than the members' --max-request-bytes allows, 1.5 MiB by default; raise it)"
    } else if detail.contains("database space exceeded") {
        " (etcd is out of space: compact and defragment it, or raise --quota-backend-bytes)"
    } else if detail.contains("certificate") || detail.contains("tls") || detail.contains("TLS") {
        " (a TLS problem: check the ca=, cert= and key= files against the members' certificates)"
    } else {
        ""
    };
    StoreError::Backend {
        location: location.to_owned(),
        message: format!("{detail}{hint}"),
    }
}

/// The innermost cause of a client error: what actually went wrong on the wire.
fn root_cause(err: &etcd_client::Error) -> String {
    let top: &dyn std::error::Error = match err {
        etcd_client::Error::GRpcStatus(status) => status,
        etcd_client::Error::TransportError(e) => e,
        other => return other.to_string(),
    };
    let mut deepest = top;
    while let Some(cause) = deepest.source() {
        deepest = cause;
    }
    match err {
        etcd_client::Error::GRpcStatus(status) if std::ptr::addr_eq(deepest, top) => {
            status.message().to_owned()
        }
        _ => deepest.to_string(),
    }
}

/// An error with its causes, `a: b: c`.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

impl EtcdStore {
    /// Connects to the cluster a URL names and claims its prefix: a prefix holding keys that
    /// tabby did not write is refused ([`StoreError::ForeignPrefix`]) and left untouched.
    ///
    /// Problems with the URL or its TLS files are [`StoreError::InvalidUrl`]; unreachable
    /// endpoints are a [`StoreError::Backend`] naming each endpoint and what went wrong.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let config = EtcdConfig::parse(url)?;
        Self::connect(&config, url)
    }

    fn connect(config: &EtcdConfig, url: &str) -> Result<Self, StoreError> {
        let location = config.location();
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            // A member cut off from the leader cancels the watch, so it reconnects elsewhere.
            .with_require_leader(true);
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls, url)?);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tabby-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend {
                location: location.clone(),
                message: format!("cannot start the etcd client's threads: {e}"),
            })?;
        let uris = config.uris();
        let client = runtime
            .block_on(Client::connect(uris, Some(options)))
            .map_err(|e| StoreError::InvalidUrl {
                url: url.to_owned(),
                reason: error_chain(&e),
            })?;
        let shared = Shared {
            kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            runtime: Some(runtime),
            layout: Layout::new(&config.prefix),
            location,
            prefix: config.prefix.clone(),
        };
        let store = Self {
            shared: Arc::new(shared),
        };
        store.claim(config)?;
        debug!(location = %store.shared.location, "etcd datastore open");
        Ok(store)
    }

    /// Makes sure the prefix is ours: marked by us, or empty (then marked).
    fn claim(&self, config: &EtcdConfig) -> Result<(), StoreError> {
        let shared = &self.shared;
        let schema = shared.layout.schema();
        let root = shared.layout.root();
        let mut kv = shared.kv.clone();
        let marker = keys::schema_value();
        let location = shared.location.clone();
        let answer = shared.run_for(OPEN_TIMEOUT, async move {
            // With one member down the client may try it first: give the others a moment.
            let started = Instant::now();
            loop {
                let result = claim_prefix(&mut kv, &schema, &root, &marker).await;
                match result {
                    Err(err) if !is_from_server(&err) && started.elapsed() < OPEN_RETRY => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => return Ok(other),
                }
            }
        });
        let claim = match answer {
            Ok(Ok(claim)) => claim,
            // Anything but an answer from etcd itself is a connection problem: refused, no
            // TLS session (a member wanting a client certificate just drops it), or a peer
            // that does not speak gRPC (a TLS port reached without TLS).
            Ok(Err(err)) if !is_from_server(&err) => {
                return Err(self.unreachable(config, &root_cause(&err)));
            }
            Ok(Err(err)) => return Err(backend(&location, &err)),
            // Only the timeout fails the outer result.
            Err(_) => return Err(self.unreachable(config, "no answer")),
        };
        match claim {
            Claim::Marked(value) => match keys::parse_schema(&value) {
                Some(keys::SCHEMA_VERSION) => Ok(()),
                Some(other) => Err(StoreError::Backend {
                    location: shared.location.clone(),
                    message: format!(
                        "the datastore has schema version {other}, this tabby supports version {}",
                        keys::SCHEMA_VERSION
                    ),
                }),
                None => Err(StoreError::ForeignPrefix {
                    location: shared.location.clone(),
                    prefix: shared.prefix.clone(),
                    example: shared.layout.schema(),
                }),
            },
            Claim::Foreign(example) => Err(StoreError::ForeignPrefix {
                location: shared.location.clone(),
                prefix: shared.prefix.clone(),
                example,
            }),
        }
    }

    /// Why no endpoint answered: each endpoint with what a plain TCP connection says.
    fn unreachable(&self, config: &EtcdConfig, client_said: &str) -> StoreError {
        use std::net::{TcpStream, ToSocketAddrs};
        let reasons: Vec<String> = config
            .endpoints
            .iter()
            .map(|endpoint| {
                let addrs = match endpoint.to_socket_addrs() {
                    Ok(addrs) => addrs.collect::<Vec<_>>(),
                    Err(e) => return format!("{endpoint}: cannot resolve the host name ({e})"),
                };
                let mut last = String::from("no address");
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                        Ok(_) => {
                            return if config.tls.is_some() {
                                format!(
                                    "{endpoint}: accepts connections but no TLS session with etcd came up ({client_said}); check that ca= signed the member's certificate, that cert= and key= are a client certificate it trusts, and that the member serves TLS"
                                )
                            } else {
                                format!(
                                    "{endpoint}: accepts connections but etcd did not answer ({client_said}); is it etcd, serving without TLS? For TLS use etcds://"
                                )
                            };
                        }
                        Err(e) => last = format!("{addr}: {e}"),
                    }
                }
                format!("{endpoint}: {last}")
            })
            .collect();
        StoreError::Backend {
            location: self.shared.location.clone(),
            message: format!("cannot reach etcd: {}", reasons.join("; ")),
        }
    }

    /// The cluster's current revision (also counting writes under other prefixes).
    fn current(&self) -> Result<Revision, StoreError> {
        self.shared.revision()
    }
}

/// Reads the prefix's marker, or marks the prefix if it is empty.
async fn claim_prefix(
    kv: &mut KvClient,
    schema: &str,
    root: &str,
    marker: &str,
) -> Result<Claim, etcd_client::Error> {
    let found = kv.get(schema, None).await?;
    if let Some(existing) = found.kvs().first() {
        return Ok(Claim::Marked(existing.value().to_vec()));
    }
    let any = kv
        .get(
            root,
            Some(
                GetOptions::new()
                    .with_range(prefix_end(root))
                    .with_limit(1)
                    .with_keys_only(),
            ),
        )
        .await?;
    if let Some(foreign) = any.kvs().first() {
        return Ok(Claim::Foreign(
            String::from_utf8_lossy(foreign.key()).into_owned(),
        ));
    }
    let txn = Txn::new()
        .when([Compare::version(schema, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(schema, marker, None)])
        .or_else([TxnOp::get(schema, None)]);
    let resp = kv.txn(txn).await?;
    if resp.succeeded() {
        return Ok(Claim::Marked(marker.as_bytes().to_vec()));
    }
    // Another tabby claimed it at the same moment: read its marker.
    let value = first_get(&resp).map(|kv| kv.value().to_vec());
    Ok(Claim::Marked(value.unwrap_or_default()))
}

enum Claim {
    /// The prefix has a marker with this value.
    Marked(Vec<u8>),
    /// The prefix holds this key and no marker.
    Foreign(String),
}

/// Reads the TLS files now, so that a wrong path is reported when opening.
fn tls_options(tls: &TlsFiles, url: &str) -> Result<TlsOptions, StoreError> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| StoreError::InvalidUrl {
            url: url.to_owned(),
            reason: format!("cannot read the {what} file {}: {e}", path.display()),
        })
    };
    let check_pem = |what: &str, path: &std::path::Path, data: &[u8]| {
        if data.windows(11).any(|w| w == b"-----BEGIN ") {
            Ok(())
        } else {
            Err(StoreError::InvalidUrl {
                url: url.to_owned(),
                reason: format!(
                    "the {what} file {} is not PEM (no -----BEGIN line)",
                    path.display()
                ),
            })
        }
    };
    let ca = read("ca", &tls.ca)?;
    check_pem("ca", &tls.ca, &ca)?;
    let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert_path, key_path)) = &tls.client {
        let cert = read("cert", cert_path)?;
        check_pem("cert", cert_path, &cert)?;
        let key = read("key", key_path)?;
        check_pem("key", key_path, &key)?;
        options = options.identity(Identity::from_pem(cert, key));
    }
    Ok(options)
}

/// The first key-value of a transaction's first (get) response.
fn first_get(resp: &etcd_client::TxnResponse) -> Option<KeyValue> {
    resp.op_responses()
        .into_iter()
        .next()
        .and_then(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        })
}

/// An [`Entry`] from an etcd key-value under our prefix.
fn to_entry(layout: &Layout, kv: &KeyValue, location: &str) -> Result<Option<Entry>, StoreError> {
    let Some(key) = layout.parse(kv.key()) else {
        return Ok(None);
    };
    let value = String::from_utf8(kv.value().to_vec()).map_err(|_| StoreError::Backend {
        location: location.to_owned(),
        message: format!("the value of {key} is not UTF-8 text"),
    })?;
    Ok(Some(Entry {
        key,
        value,
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }))
}

/// The compare an op needs before it writes (none for a put).
fn condition(layout: &Layout, op: &Op) -> Option<Compare> {
    let key = layout.key(op.key());
    match op {
        Op::Create { .. } => Some(Compare::version(key, CompareOp::Equal, 0)),
        Op::Update { expect, .. } | Op::Delete { expect, .. } => Some(match expect {
            // A positive mod_revision also proves the object exists.
            Some(rev) if *rev > 0 => Compare::mod_revision(key, CompareOp::Equal, *rev),
            // No object ever has this revision: fail, and report what is there.
            Some(_) => Compare::version(key, CompareOp::Less, 0),
            None => Compare::version(key, CompareOp::Greater, 0),
        }),
        Op::Put { .. } => None,
    }
}

fn write_op(layout: &Layout, op: &Op) -> TxnOp {
    let key = layout.key(op.key());
    match op {
        Op::Create { value, .. } | Op::Update { value, .. } | Op::Put { value, .. } => {
            TxnOp::put(key, value.as_str(), None)
        }
        Op::Delete { .. } => TxnOp::delete(key, None),
    }
}

/// Why `op` cannot be applied to the object's current state, if it cannot.
fn refusal(op: &Op, current: Option<Revision>) -> Option<StoreError> {
    let key = op.key().clone();
    match (op, current) {
        (Op::Create { .. }, Some(_)) => Some(StoreError::AlreadyExists { key }),
        (Op::Update { expect, .. } | Op::Delete { expect, .. }, current) => match (expect, current)
        {
            (None, None) => Some(StoreError::NotFound { key }),
            (Some(expected), actual) if actual != Some(*expected) => Some(StoreError::Conflict {
                key,
                expected: *expected,
                actual,
            }),
            _ => None,
        },
        _ => None,
    }
}

impl Datastore for EtcdStore {
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        if let Some(reason) = key.invalid_reason() {
            return Err(StoreError::InvalidKey {
                key: key.clone(),
                reason: reason.to_owned(),
            });
        }
        let shared = &self.shared;
        let etcd_key = shared.layout.key(key);
        let resp = shared.read(move |mut kv| {
            let k = etcd_key.clone();
            async move { kv.get(k, None).await }
        })?;
        match resp.kvs().first() {
            Some(kv) => to_entry(&shared.layout, kv, &shared.location),
            None => Ok(None),
        }
    }

    fn list(&self, kind: Option<&str>, namespace: Option<&str>) -> Result<Listing, StoreError> {
        let shared = &self.shared;
        let prefix = shared.layout.range(kind, namespace);
        let end = prefix_end(&prefix);
        let mut entries = Vec::new();
        let mut start = prefix.into_bytes();
        let mut revision = 0;
        loop {
            let (from, to, at) = (start.clone(), end.clone(), revision);
            let resp = shared.read(move |mut kv| {
                let options = GetOptions::new()
                    .with_range(to.clone())
                    .with_limit(PAGE)
                    .with_revision(at);
                let from = from.clone();
                async move { kv.get(from, Some(options)).await }
            })?;
            if revision == 0 {
                revision = header_revision(resp.header());
            }
            for kv in resp.kvs() {
                if let Some(entry) = to_entry(&shared.layout, kv, &shared.location)?
                    && namespace.is_none_or(|ns| ns == entry.key.namespace)
                {
                    entries.push(entry);
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
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Listing { entries, revision })
    }

    fn commit(&self, ops: &[Op]) -> Result<Revision, StoreError> {
        crate::validate_ops(ops)?;
        if ops.is_empty() {
            return self.current();
        }
        let layout = &self.shared.layout;
        let compares: Vec<Compare> = ops.iter().filter_map(|op| condition(layout, op)).collect();
        let writes: Vec<TxnOp> = ops.iter().map(|op| write_op(layout, op)).collect();
        let reads: Vec<TxnOp> = ops
            .iter()
            .map(|op| TxnOp::get(layout.key(op.key()), None))
            .collect();
        let txn = Txn::new().when(compares).and_then(writes).or_else(reads);
        let resp = self.shared.write(txn)?;
        let revision = header_revision(resp.header());
        if resp.succeeded() {
            debug!(location = %self.shared.location, revision, ops = ops.len(), "committed");
            return Ok(revision);
        }
        // The reads ran at the revision the compares saw, so this names the op exactly.
        let states = resp.op_responses();
        for (index, (op, state)) in ops.iter().zip(&states).enumerate() {
            let current = match state {
                TxnOpResponse::Get(get) => get.kvs().first().map(KeyValue::mod_revision),
                _ => None,
            };
            if let Some(error) = refusal(op, current) {
                return Err(StoreError::OpFailed {
                    index,
                    error: Box::new(error),
                });
            }
        }
        Err(StoreError::Backend {
            location: self.shared.location.clone(),
            message: "etcd refused the commit's compares, but every object is as they require"
                .to_owned(),
        })
    }

    fn watch(&self, after: Revision, filter: WatchFilter) -> Result<Box<dyn Watch>, StoreError> {
        let after = after.max(0);
        let compacted = self.shared.compacted()?;
        if after < compacted {
            return Ok(Box::new(EtcdWatch::failed(StoreError::Compacted {
                requested: after,
                compacted,
            })));
        }
        Ok(Box::new(EtcdWatch::start(
            Arc::clone(&self.shared),
            after,
            compacted,
            filter,
        )))
    }

    fn compact(&self, up_to: Revision) -> Result<(), StoreError> {
        let current = self.current()?;
        if up_to > current {
            return Err(StoreError::FutureRevision {
                requested: up_to,
                current,
            });
        }
        let shared = &self.shared;
        let watermark = shared.layout.compacted();
        loop {
            let found = {
                let key = watermark.clone();
                shared.read(move |mut kv| {
                    let key = key.clone();
                    async move { kv.get(key, None).await }
                })?
            };
            let existing = found.kvs().first();
            let before = existing.and_then(|kv| keys::parse_compacted(kv.value()));
            if before.is_some_and(|b| up_to <= b) || up_to <= 0 {
                return Ok(());
            }
            // Compaction is idempotent, so it retries like a read.
            shared.read(move |mut kv| async move {
                match kv
                    .compact(up_to, Some(CompactionOptions::new().with_physical()))
                    .await
                {
                    // Someone (etcd's auto-compaction, another installation) went further.
                    Err(e)
                        if e.to_string()
                            .contains("required revision has been compacted") =>
                    {
                        Ok(())
                    }
                    other => other.map(|_| ()),
                }
            })?;
            let guard = match existing {
                Some(kv) => {
                    Compare::mod_revision(watermark.clone(), CompareOp::Equal, kv.mod_revision())
                }
                None => Compare::version(watermark.clone(), CompareOp::Equal, 0),
            };
            let txn = Txn::new().when([guard]).and_then([TxnOp::put(
                watermark.clone(),
                keys::compacted_value(up_to),
                None,
            )]);
            // Out of space (etcd's quota alarm), etcd's compaction above still went through:
            // say so, since defragmenting now frees the space and compacting again records it.
            let written = shared.write(txn).map_err(|err| match err {
                StoreError::Backend { location, message } => StoreError::Backend {
                    location,
                    message: format!(
                        "etcd compacted up to revision {up_to}, but tabby's compaction mark was not written: {message}"
                    ),
                },
                other => other,
            })?;
            if written.succeeded() {
                debug!(location = %shared.location, up_to, "compacted");
                return Ok(());
            }
        }
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        self.current()
    }
}
