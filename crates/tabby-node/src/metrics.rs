//! The agent's health and Prometheus metrics, shared between the agent loop and the HTTP
//! server.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::dataplane::RouteCounts;

/// Upper bounds (seconds) of the apply latency histogram buckets.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Error kinds counted in `tabby_errors_total`.
const ERROR_KINDS: [&str; 4] = ["datastore", "compacted", "nft", "routes"];

#[derive(Debug, Default)]
struct State {
    in_sync: bool,
    applied: bool,
    bucket_counts: [u64; BUCKETS.len()],
    apply_count: u64,
    apply_sum: f64,
    endpoints: usize,
    active_policies: usize,
    ip_sets: usize,
    routes: RouteCounts,
    errors: [u64; ERROR_KINDS.len()],
    resyncs: u64,
    revision: i64,
    programmed: i64,
    lost: Option<Lost>,
}

/// Why the agent is not in sync with the datastore, and since when.
#[derive(Debug)]
struct Lost {
    error: String,
    since: Instant,
    retry_in: Option<Duration>,
}

/// The agent's view of its datastore, as `/status` reports it under `datastore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatastoreStatus {
    /// Following the datastore's changes.
    pub in_sync: bool,
    /// What `/readyz` says: in sync and the dataplane programmed at least once.
    pub ready: bool,
    /// The last revision handled.
    pub revision: i64,
    /// The last revision whose changes are all in the kernel: what is enforced while the
    /// datastore is away.
    pub programmed_revision: i64,
    /// Why it is not in sync (the last datastore error), while it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For how many seconds it has not been in sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_for_secs: Option<u64>,
    /// When the agent backs off: the wait before its next attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
}

/// Shared counters and gauges; cheap to update from the agent loop.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Metrics must keep answering even if a panicking thread held the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The syncer finished a snapshot (`true`) or lost the datastore (`false`).
    pub fn set_in_sync(&self, in_sync: bool) {
        let mut s = self.lock();
        s.in_sync = in_sync;
        if in_sync {
            s.lost = None;
        }
    }

    /// Not in sync because of `error`; `retry_in` when the agent waits before trying again.
    /// The time since the first such error is kept until the agent is in sync again.
    pub fn datastore_lost(&self, error: &str, retry_in: Option<Duration>) {
        let mut s = self.lock();
        s.in_sync = false;
        let since = s.lost.as_ref().map_or_else(Instant::now, |l| l.since);
        s.lost = Some(Lost {
            error: error.to_owned(),
            since,
            retry_in,
        });
    }

    /// The datastore part of `/status`.
    pub fn datastore_status(&self) -> DatastoreStatus {
        let s = self.lock();
        DatastoreStatus {
            in_sync: s.in_sync,
            ready: s.applied && s.in_sync,
            revision: s.revision,
            programmed_revision: s.programmed,
            error: s.lost.as_ref().map(|l| l.error.clone()),
            error_for_secs: s.lost.as_ref().map(|l| l.since.elapsed().as_secs()),
            retry_in_ms: s
                .lost
                .as_ref()
                .and_then(|l| l.retry_in)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Why `/readyz` says no, or `None` when ready.
    pub fn not_ready_reason(&self) -> Option<String> {
        let s = self.lock();
        if !s.applied {
            return Some(match &s.lost {
                Some(l) => format!(
                    "never in sync with the datastore yet, for {}s: {}{}",
                    l.since.elapsed().as_secs(),
                    l.error,
                    l.retry_in
                        .map(|d| format!("; next attempt in {d:?}"))
                        .unwrap_or_default()
                ),
                None => "not yet in sync, or the first dataplane program is not applied".to_owned(),
            });
        }
        if s.in_sync {
            return None;
        }
        Some(match &s.lost {
            Some(l) => format!(
                "not in sync with the datastore for {}s ({}); still enforcing the last programmed state (revision {})",
                l.since.elapsed().as_secs(),
                l.error,
                s.programmed
            ),
            None => format!(
                "resyncing with the datastore; still enforcing the last programmed state (revision {})",
                s.programmed
            ),
        })
    }

    /// Counts a resync.
    pub fn resynced(&self, revision: i64) {
        let mut s = self.lock();
        s.resyncs += 1;
        s.revision = revision;
    }

    /// The last datastore revision whose changes are all written to the kernel.
    pub fn set_programmed(&self, revision: i64) {
        self.lock().programmed = revision;
    }

    /// The last datastore revision handled.
    pub fn set_revision(&self, revision: i64) {
        self.lock().revision = revision;
    }

    /// A dataplane write succeeded after `took`.
    pub fn applied(&self, took: Duration) {
        let mut s = self.lock();
        s.applied = true;
        let secs = took.as_secs_f64();
        s.apply_count += 1;
        s.apply_sum += secs;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.bucket_counts[i] += 1;
            }
        }
    }

    /// Sizes of what is programmed.
    pub fn set_sizes(
        &self,
        endpoints: usize,
        active_policies: usize,
        ip_sets: usize,
        routes: RouteCounts,
    ) {
        let mut s = self.lock();
        s.endpoints = endpoints;
        s.active_policies = active_policies;
        s.ip_sets = ip_sets;
        s.routes = routes;
    }

    /// Counts an error of `kind` (one of `datastore`, `compacted`, `nft`, `routes`).
    pub fn error(&self, kind: &str) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.lock().errors[i] += 1;
        }
    }

    /// Ready: in sync with the datastore now, and a dataplane program applied. During a
    /// datastore outage the agent is not ready, though it keeps enforcing what it programmed.
    pub fn ready(&self) -> bool {
        let s = self.lock();
        s.applied && s.in_sync
    }

    /// Whether a dataplane program was ever applied (what is enforced survives an outage).
    pub fn programmed_once(&self) -> bool {
        self.lock().applied
    }

    /// Whether the syncer is currently in sync.
    pub fn in_sync(&self) -> bool {
        self.lock().in_sync
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let s = self.lock();
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "tabby_in_sync",
            "1 while in sync with the datastore.",
            f64::from(u8::from(s.in_sync)),
        );
        gauge(
            &mut out,
            "tabby_ready",
            "1 while in sync with the datastore and a dataplane program is applied.",
            f64::from(u8::from(s.applied && s.in_sync)),
        );
        gauge(
            &mut out,
            "tabby_datastore_unavailable_seconds",
            "Seconds since the datastore was lost (0 while in sync).",
            s.lost
                .as_ref()
                .map_or(0.0, |l| l.since.elapsed().as_secs_f64().floor()),
        );
        gauge(
            &mut out,
            "tabby_local_endpoints",
            "Workload endpoints programmed on this host.",
            s.endpoints as f64,
        );
        gauge(
            &mut out,
            "tabby_active_policies",
            "Policies that apply to a local endpoint.",
            s.active_policies as f64,
        );
        gauge(
            &mut out,
            "tabby_ip_sets",
            "IP sets programmed.",
            s.ip_sets as f64,
        );
        gauge(
            &mut out,
            "tabby_local_routes",
            "Routes to local workloads programmed.",
            s.routes.local as f64,
        );
        gauge(
            &mut out,
            "tabby_remote_routes",
            "Routes to other nodes' workloads programmed (datastore routing).",
            s.routes.remote as f64,
        );
        gauge(
            &mut out,
            "tabby_datastore_revision",
            "Last datastore revision handled.",
            s.revision as f64,
        );
        gauge(
            &mut out,
            "tabby_programmed_revision",
            "Last datastore revision whose changes are all programmed into the kernel.",
            s.programmed as f64,
        );
        let _ = writeln!(
            out,
            "# HELP tabby_resyncs_total Full resyncs from a datastore snapshot.\n# TYPE tabby_resyncs_total counter\ntabby_resyncs_total {}",
            s.resyncs
        );
        let _ = writeln!(
            out,
            "# HELP tabby_errors_total Failures by kind (each is retried).\n# TYPE tabby_errors_total counter"
        );
        for (kind, n) in ERROR_KINDS.iter().zip(s.errors) {
            let _ = writeln!(out, "tabby_errors_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP tabby_apply_seconds Time to write one dataplane update.\n# TYPE tabby_apply_seconds histogram"
        );
        for (le, n) in BUCKETS.iter().zip(s.bucket_counts) {
            let _ = writeln!(out, "tabby_apply_seconds_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "tabby_apply_seconds_bucket{{le=\"+Inf\"}} {}",
            s.apply_count
        );
        let _ = writeln!(out, "tabby_apply_seconds_sum {}", s.apply_sum);
        let _ = writeln!(out, "tabby_apply_seconds_count {}", s.apply_count);
        out
    }
}
