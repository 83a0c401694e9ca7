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
//! `TABBY_BENCH_SECONDS` (10), `TABBY_BENCH_WRITERS` (64 threads), `TABBY_BENCH_WATCHER_PROCESSES` (10: the watchers run in that
//! many child processes, one connection each, as agents on separate hosts would; 0 runs them
//! as threads of the writing process as the first version did), `TABBY_BENCH_WATCHER_NICE`
//! (10: the children's niceness, so that on a small machine the writers and etcd come first
//! and the figure is delivery latency, not a starved writer).

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

/// Set in the watcher child processes.
const ROLE: &str = "TABBY_BENCH_ROLE";

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("watchers") {
        watcher_process();
        return;
    }
    let scratch = ScratchDir::new("etcd-bench");
    let base: PathBuf = std::env::var_os("TABBY_BENCH_ETCD_DIR")
        .map_or_else(|| scratch.path().to_owned(), PathBuf::from);
    let cluster = EtcdCluster::start_on_loopback(&base, 3).expect("a 3-member etcd cluster");
    let disk = if base.starts_with("/dev/shm") {
        "tmpfs"
    } else {
        "disk"
    };
    if knob("TABBY_BENCH_SKIP_CAS", 0) == 0 {
        cas_writes(&cluster, disk);
    }
    watch_latency(&cluster, disk);
}

/// This process's CPU seconds so far.
fn own_cpu() -> f64 {
    process_usage(std::process::id()).0
}

/// A watcher child: `TABBY_BENCH_WATCHERS` watches on one connection to `TABBY_BENCH_URL`
/// from `TABBY_BENCH_START_REV`; says `ready` once they are open, then, when every watcher
/// has its `TABBY_BENCH_UPDATES` events (or `TABBY_BENCH_DEADLINE_S` passed), prints its
/// latency histogram (0.1 ms buckets) and CPU time.
fn watcher_process() {
    let watchers = knob("TABBY_BENCH_WATCHERS", 10);
    let updates = knob("TABBY_BENCH_UPDATES", 0);
    let start_rev = i64::try_from(knob("TABBY_BENCH_START_REV", 0)).expect("a revision");
    let deadline = Instant::now() + Duration::from_secs(knob("TABBY_BENCH_DEADLINE_S", 120));
    let url = std::env::var("TABBY_BENCH_URL").expect("TABBY_BENCH_URL");
    let store = open(&url);
    let filter = WatchFilter {
        kind: Some("WorkloadEndpoint".to_owned()),
        namespace: None,
    };
    let watches: Vec<_> = (0..watchers)
        .map(|_| store.watch(start_rev, filter.clone()).expect("watch"))
        .collect();
    println!("ready");
    let histogram = Mutex::new(std::collections::BTreeMap::<u64, u64>::new());
    thread::scope(|scope| {
        for mut watch in watches {
            let histogram = &histogram;
            scope.spawn(move || {
                let mut mine = std::collections::BTreeMap::<u64, u64>::new();
                let mut got = 0;
                while got < updates && Instant::now() < deadline {
                    let Some(event) = watch.next(Duration::from_millis(200)).expect("watch") else {
                        continue;
                    };
                    let now = now_nanos();
                    if let Event::Put { entry, .. } = event
                        && let Some(at) = written_ns(&entry.value)
                    {
                        got += 1;
                        *mine
                            .entry((now.saturating_sub(at) / 100_000) as u64)
                            .or_default() += 1;
                    }
                }
                let mut all = histogram.lock().unwrap();
                for (bucket, n) in mine {
                    *all.entry(bucket).or_default() += n;
                }
            });
        }
    });
    let histogram = histogram.into_inner().unwrap();
    let buckets: Vec<String> = histogram.iter().map(|(b, n)| format!("{b}:{n}")).collect();
    println!("cpu {:.3}", own_cpu());
    println!("histogram {}", buckets.join(" "));
}

/// Watchers spread over `processes` children: started, waited for until their watches are
/// open; `run` then churns; the children's histograms (0.1 ms buckets) and CPU seconds.
fn watch_in_processes(
    url: &str,
    start_rev: i64,
    watchers: u64,
    processes: u64,
    updates: u64,
    run: impl FnOnce(),
) -> (std::collections::BTreeMap<u64, u64>, f64) {
    use std::io::BufRead as _;
    let exe = std::env::current_exe().expect("the bench binary");
    let nice = knob("TABBY_BENCH_WATCHER_NICE", 10).to_string();
    let mut children: Vec<_> = (0..processes)
        .map(|p| {
            let mine = watchers / processes + u64::from(p < watchers % processes);
            let mut child = std::process::Command::new("nice")
                .args(["-n", &nice])
                .arg(&exe)
                .env(ROLE, "watchers")
                .env("TABBY_BENCH_WATCHERS", mine.to_string())
                .env("TABBY_BENCH_UPDATES", updates.to_string())
                .env("TABBY_BENCH_START_REV", start_rev.to_string())
                .env("TABBY_BENCH_URL", url)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("start a watcher process");
            let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
            assert_eq!(
                lines.next().and_then(Result::ok).as_deref(),
                Some("ready"),
                "a watcher process failed to start"
            );
            (child, lines)
        })
        .collect();
    run();
    let mut histogram = std::collections::BTreeMap::new();
    let mut cpu = 0.0;
    for (child, lines) in &mut children {
        for line in lines.map_while(Result::ok) {
            if let Some(c) = line.strip_prefix("cpu ") {
                cpu += c.parse::<f64>().unwrap_or(0.0);
            } else if let Some(h) = line.strip_prefix("histogram ") {
                for pair in h.split_whitespace() {
                    if let Some((b, n)) = pair.split_once(':') {
                        *histogram
                            .entry(b.parse::<u64>().expect("bucket"))
                            .or_default() += n.parse::<u64>().expect("count");
                    }
                }
            }
        }
        let _ = child.wait();
    }
    (histogram, cpu)
}

/// The `q` quantile of a 0.1 ms histogram, in milliseconds.
fn histogram_quantile(histogram: &std::collections::BTreeMap<u64, u64>, q: f64) -> f64 {
    let total: u64 = histogram.values().sum();
    if total == 0 {
        return f64::NAN;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (bucket, n) in histogram {
        seen += n;
        if seen >= rank {
            return (*bucket as f64 + 0.5) / 10.0;
        }
    }
    f64::NAN
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

/// Updates on a fixed schedule from `TABBY_BENCH_WRITERS` threads (so that one slow commit
/// does not hold the rest back); the rate achieved.
fn churn(writer: &dyn Datastore, updates: u64, rate: u64, endpoints: u64) -> f64 {
    let next = AtomicU64::new(0);
    let started = Instant::now();
    thread::scope(|inner| {
        for _ in 0..knob("TABBY_BENCH_WRITERS", 64) {
            inner.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= updates {
                        return;
                    }
                    let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    let i = (n * 7919) % endpoints;
                    writer
                        .commit(&[Op::Put {
                            key: endpoint_key(i),
                            value: endpoint_value(i, now_nanos()),
                        }])
                        .expect("update");
                }
            });
        }
    });
    updates as f64 / started.elapsed().as_secs_f64()
}

/// The watchers as threads of this process (the first version of this bench).
fn watch_in_threads(
    url: &str,
    start_rev: i64,
    watchers: u64,
    connections: u64,
    updates: u64,
    run: impl FnOnce(),
) -> Vec<f64> {
    let stores: Vec<Arc<dyn Datastore>> = (0..connections).map(|_| Arc::from(open(url))).collect();
    let received = AtomicUsize::new(0);
    let all_latencies = Mutex::new(Vec::with_capacity((updates * watchers) as usize));
    let stop = AtomicBool::new(false);
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
        run();
        // Let the watchers drain, then stop the stragglers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.load(Ordering::Relaxed) < (updates * watchers) as usize
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let mut lat = all_latencies.into_inner().unwrap();
    lat.sort_by(f64::total_cmp);
    lat
}

fn watch_latency(cluster: &EtcdCluster, disk: &str) {
    let watchers = knob("TABBY_BENCH_WATCHERS", 100);
    let processes = knob("TABBY_BENCH_WATCHER_PROCESSES", 10).min(watchers);
    let connections = if processes > 0 {
        processes
    } else {
        knob("TABBY_BENCH_CONNECTIONS", 10).clamp(1, watchers)
    };
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

    let start_rev = writer.revision().expect("revision");
    let updates = rate * seconds;
    let cpu_before: Vec<(f64, u64)> = (0..3)
        .map(|i| process_usage(cluster.pid(i).expect("running")))
        .collect();
    let writer_cpu_before = own_cpu();
    let mut achieved = 0.0;
    let mut churn_started = Instant::now();
    let run = || {
        churn_started = Instant::now();
        achieved = churn(&*writer, updates, rate, endpoints);
    };
    let (delivered, p50, p99, watcher_cpu) = if processes > 0 {
        let (histogram, cpu) =
            watch_in_processes(&url, start_rev, watchers, processes, updates, run);
        (
            histogram.values().sum::<u64>() as usize,
            histogram_quantile(&histogram, 0.5),
            histogram_quantile(&histogram, 0.99),
            Some(cpu),
        )
    } else {
        let lat = watch_in_threads(&url, start_rev, watchers, connections, updates, run);
        (
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            None,
        )
    };
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
    // In-process watchers share this process's CPU with the writers.
    let writer_cpu = (own_cpu() - writer_cpu_before) / elapsed;
    println!(
        "{{\"bench\":\"etcd_watch_latency\",\"members\":3,\"data\":\"{disk}\",\"watchers\":{watchers},\"watcher_processes\":{processes},\"writer_threads\":{},\"connections\":{connections},\"endpoints\":{endpoints},\"preload_s\":{load_s:.1},\"target_updates_per_s\":{rate},\"achieved_updates_per_s\":{achieved:.0},\"events_delivered\":{delivered},\"events_expected\":{},\"latency_ms_p50\":{p50:.1},\"latency_ms_p99\":{p99:.1},\"etcd_cpu_cores\":[{}],\"etcd_rss_mib\":[{}],\"writer_process_cpu_cores\":{writer_cpu:.2},\"watcher_processes_cpu_cores\":{},\"seconds\":{elapsed:.1}}}",
        knob("TABBY_BENCH_WRITERS", 64),
        updates * watchers,
        cpu.join(","),
        rss.join(","),
        watcher_cpu.map_or_else(|| "null".to_owned(), |c| format!("{:.2}", c / elapsed)),
    );
}
