//! etcd backend figures against a real 3-member cluster on loopback, one JSON line each; a
//! benchmark never fails on speed. Members keep their data on the ordinary temporary folder
//! (a disk, with etcd's fsyncs), not tmpfs, unless `TABBY_BENCH_ETCD_DIR` names another.
//!
//! - `etcd_cas_writes`: compare-and-swap increments per second through the backend, each
//!   thread on its own key (no conflicts) and all threads on one key (conflicts retried).
//! - `etcd_watch_latency`: many watchers (simulated agents) over 10,000 endpoints churned at
//!   a target rate; delivery latency from just before the write's commit to each watcher,
//!   p50/p99, and the members' CPU and memory meanwhile.
//!
//! Knobs (environment): `TABBY_BENCH_WATCHERS` (100), `TABBY_BENCH_CONNECTIONS` (10, stores
//! the watchers share), `TABBY_BENCH_ENDPOINTS` (10000), `TABBY_BENCH_RATE` (1000 updates/s),
//! `TABBY_BENCH_SECONDS` (10).

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its figures on stdout"
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tabby_store::conformance::ScratchDir;
use tabby_store::etcd::EtcdStore;
use tabby_store::etcd::server::EtcdCluster;
use tabby_store::{Datastore, Event, Key, Op, WatchFilter};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let scratch = ScratchDir::new("etcd-bench");
    let base: PathBuf = std::env::var_os("TABBY_BENCH_ETCD_DIR")
        .map_or_else(|| scratch.path().to_owned(), PathBuf::from);
    let cluster = EtcdCluster::start_on_loopback(&base, 3).expect("a 3-member etcd cluster");
    let disk = if base.starts_with("/dev/shm") {
        "tmpfs"
    } else {
        "disk"
    };
    cas_writes(&cluster, disk);
    watch_latency(&cluster, disk);
}

fn open(url: &str) -> Box<dyn Datastore> {
    Box::new(EtcdStore::open(url).expect("open the cluster"))
}

fn cas_writes(cluster: &EtcdCluster, disk: &str) {
    let store = open(&cluster.url("/cas"));
    let seconds = 5;
    for (threads, shared) in [(1, false), (8, false), (32, false), (8, true)] {
        let keys: Vec<Key> = (0..threads)
            .map(|t| {
                let key = Key::new(
                    "Counter",
                    "",
                    if shared {
                        "shared".to_owned()
                    } else {
                        format!("t{threads}-{t}")
                    },
                );
                let _ = store.create(&key, "0");
                key
            })
            .collect();
        let done = AtomicU64::new(0);
        let conflicts = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let latencies = Mutex::new(Vec::new());
        let started = Instant::now();
        thread::scope(|scope| {
            for key in &keys {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let current = store.get(key).expect("read").expect("the counter");
                        let n: u64 = current.value.parse().expect("a count");
                        match store.update(key, &(n + 1).to_string(), Some(current.mod_revision)) {
                            Ok(_) => {
                                done.fetch_add(1, Ordering::Relaxed);
                                mine.push(t.elapsed().as_secs_f64() * 1e3);
                            }
                            Err(e) if e.is_conflict() => {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("write failed: {e}"),
                        }
                    }
                    latencies.lock().unwrap().extend(mine);
                });
            }
            thread::sleep(Duration::from_secs(seconds));
            stop.store(true, Ordering::Relaxed);
        });
        let elapsed = started.elapsed().as_secs_f64();
        let mut lat = latencies.into_inner().unwrap();
        lat.sort_by(f64::total_cmp);
        println!(
            "{{\"bench\":\"etcd_cas_writes\",\"members\":3,\"data\":\"{disk}\",\"threads\":{threads},\"keys\":\"{}\",\"writes_per_s\":{:.0},\"conflicts_per_s\":{:.0},\"read_cas_ms_p50\":{:.2},\"read_cas_ms_p99\":{:.2}}}",
            if shared {
                "one shared"
            } else {
                "one per thread"
            },
            done.load(Ordering::Relaxed) as f64 / elapsed,
            conflicts.load(Ordering::Relaxed) as f64 / elapsed,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
        );
    }
}

/// CPU seconds (user + system) and resident memory of a process, from /proc.
fn process_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (cpu, rss_kb)
}

fn endpoint_key(i: u64) -> Key {
    Key::new(
        "WorkloadEndpoint",
        format!("ns-{}", i % 100),
        format!("wep-{i}"),
    )
}

/// A WorkloadEndpoint-sized value carrying the time it was written.
fn endpoint_value(i: u64, written_ns: u128) -> String {
    format!(
        "{{\"written_ns\":{written_ns},\"apiVersion\":\"projectcalico.org/v3\",\"kind\":\"WorkloadEndpoint\",\"metadata\":{{\"name\":\"wep-{i}\",\"namespace\":\"ns-{}\",\"labels\":{{\"app\":\"app-{}\",\"projectcalico.org/namespace\":\"ns-{}\",\"projectcalico.org/orchestrator\":\"k8s\"}}}},\"spec\":{{\"node\":\"node-{}\",\"orchestrator\":\"k8s\",\"pod\":\"pod-{i}\",\"endpoint\":\"eth0\",\"interfaceName\":\"cali{i:011x}\",\"ipNetworks\":[\"10.{}.{}.{}/32\"],\"profiles\":[\"kns.ns-{}\"]}}}}",
        i % 100,
        i % 50,
        i % 100,
        i % 100,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255,
        i % 100
    )
}

fn written_ns(value: &str) -> Option<u128> {
    value
        .strip_prefix("{\"written_ns\":")?
        .split(',')
        .next()?
        .parse()
        .ok()
}

fn watch_latency(cluster: &EtcdCluster, disk: &str) {
    let watchers = knob("TABBY_BENCH_WATCHERS", 100);
    let connections = knob("TABBY_BENCH_CONNECTIONS", 10).clamp(1, watchers);
    let endpoints = knob("TABBY_BENCH_ENDPOINTS", 10_000);
    let rate = knob("TABBY_BENCH_RATE", 1000);
    let seconds = knob("TABBY_BENCH_SECONDS", 10);
    let url = cluster.url("/churn");
    let writer = open(&url);

    let loading = Instant::now();
    let all: Vec<u64> = (0..endpoints).collect();
    for chunk in all.chunks(100) {
        let ops: Vec<Op> = chunk
            .iter()
            .map(|&i| Op::Put {
                key: endpoint_key(i),
                value: endpoint_value(i, 0),
            })
            .collect();
        writer.commit(&ops).expect("preload");
    }
    let load_s = loading.elapsed().as_secs_f64();

    let stores: Vec<Arc<dyn Datastore>> = (0..connections).map(|_| Arc::from(open(&url))).collect();
    let start_rev = writer.revision().expect("revision");
    let updates = rate * seconds;
    let received = AtomicUsize::new(0);
    let all_latencies = Mutex::new(Vec::with_capacity((updates * watchers) as usize));
    let stop = AtomicBool::new(false);
    let cpu_before: Vec<(f64, u64)> = (0..3)
        .map(|i| process_usage(cluster.pid(i).expect("running")))
        .collect();
    let churn_started = Instant::now();
    let mut achieved = 0.0;
    thread::scope(|scope| {
        for w in 0..watchers {
            let store = Arc::clone(&stores[(w % connections) as usize]);
            let (received, all_latencies, stop) = (&received, &all_latencies, &stop);
            scope.spawn(move || {
                let filter = WatchFilter {
                    kind: Some("WorkloadEndpoint".to_owned()),
                    namespace: None,
                };
                let mut watch = store.watch(start_rev, filter).expect("watch");
                let mut mine = Vec::with_capacity(updates as usize);
                while (mine.len() as u64) < updates && !stop.load(Ordering::Relaxed) {
                    let Some(event) = watch.next(Duration::from_millis(200)).expect("watch") else {
                        continue;
                    };
                    let now = now_nanos();
                    if let Event::Put { entry, .. } = event
                        && let Some(at) = written_ns(&entry.value)
                    {
                        mine.push(now.saturating_sub(at) as f64 / 1e6);
                    }
                }
                received.fetch_add(mine.len(), Ordering::Relaxed);
                all_latencies.lock().unwrap().extend(mine);
            });
        }

        // Writers: updates on a fixed schedule, spread over threads so that one slow commit
        // does not hold the rest back.
        let next = AtomicU64::new(0);
        let writers = 16;
        thread::scope(|inner| {
            for _ in 0..writers {
                inner.spawn(|| {
                    let store = &writer;
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= updates {
                            return;
                        }
                        let due = churn_started + Duration::from_secs_f64(n as f64 / rate as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                        let i = (n * 7919) % endpoints;
                        store
                            .commit(&[Op::Put {
                                key: endpoint_key(i),
                                value: endpoint_value(i, now_nanos()),
                            }])
                            .expect("update");
                    }
                });
            }
        });
        achieved = updates as f64 / churn_started.elapsed().as_secs_f64();
        // Let the watchers drain, then stop the stragglers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.load(Ordering::Relaxed) < (updates * watchers) as usize
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = churn_started.elapsed().as_secs_f64();
    let usage: Vec<(f64, u64)> = (0..3)
        .map(|i| process_usage(cluster.pid(i).expect("running")))
        .collect();
    let cpu: Vec<String> = usage
        .iter()
        .zip(&cpu_before)
        .map(|(after, before)| format!("{:.2}", (after.0 - before.0) / elapsed))
        .collect();
    let rss: Vec<String> = usage.iter().map(|u| (u.1 / 1024).to_string()).collect();
    let mut lat = all_latencies.into_inner().unwrap();
    lat.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"etcd_watch_latency\",\"members\":3,\"data\":\"{disk}\",\"watchers\":{watchers},\"connections\":{connections},\"endpoints\":{endpoints},\"preload_s\":{load_s:.1},\"target_updates_per_s\":{rate},\"achieved_updates_per_s\":{achieved:.0},\"events_delivered\":{},\"events_expected\":{},\"latency_ms_p50\":{:.1},\"latency_ms_p99\":{:.1},\"etcd_cpu_cores\":[{}],\"etcd_rss_mib\":[{}]}}",
        lat.len(),
        updates * watchers,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        cpu.join(","),
        rss.join(","),
    );
}
