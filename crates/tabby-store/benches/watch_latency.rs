//! SQLite backend figures, one JSON line each; a benchmark never fails on speed.
//!
//! - `sqlite_watch_latency`: a writer commits values carrying their wall-clock write time;
//!   a watch in another process (this binary re-executed) measures when each arrives. This is
//!   the path an agent sees when the CLI or a CNI call writes: nothing but polling wakes it.
//! - `sqlite_commit_10k`: one commit of 10,000 puts of policy-sized values into a fresh file.

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its figures on stdout"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tabby_store::conformance::ScratchDir;
use tabby_store::sqlite::SqliteStore;
use tabby_store::{Datastore, Key, Op, WatchFilter};

/// Set in the re-executed child: the datastore to watch.
const WATCHER_DB: &str = "TABBY_BENCH_WATCHER_DB";
const SAMPLES: usize = 500;
/// Spacing of the writes, so that each is measured on its own rather than in a burst.
const INTERVAL: Duration = Duration::from_millis(5);
const SAMPLE_KIND: &str = "BenchSample";

fn main() {
    if let Ok(db) = std::env::var(WATCHER_DB) {
        watcher(Path::new(&db));
        return;
    }
    let dir = ScratchDir::new("bench");
    watch_latency(&dir);
    commit_10k(&dir);
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The child: watch, say "ready", collect the latencies, print them as the result line.
fn watcher(db: &Path) {
    let store = SqliteStore::open(db).expect("the watcher opens the datastore");
    let filter = WatchFilter {
        kind: Some(SAMPLE_KIND.to_owned()),
        namespace: None,
    };
    let start = store.revision().expect("revision");
    let mut watch = store.watch(start, filter).expect("watch");
    println!("ready");
    std::io::stdout().flush().expect("stdout");

    let mut latencies = Vec::with_capacity(SAMPLES);
    while latencies.len() < SAMPLES {
        let event = watch
            .next(Duration::from_secs(30))
            .expect("the watch must not fail")
            .expect("the writer must keep writing");
        let received = now_nanos();
        let tabby_store::Event::Put { entry, .. } = event else {
            continue;
        };
        let written: u128 = entry
            .value
            .strip_prefix("{\"written_ns\":")
            .and_then(|v| v.strip_suffix('}'))
            .and_then(|v| v.parse().ok())
            .expect("a sample value");
        latencies.push(received.saturating_sub(written) as f64 / 1e6);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"sqlite_watch_latency\",\"samples\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
}

fn watch_latency(dir: &ScratchDir) {
    let path = dir.file("watch-latency");
    let store = SqliteStore::open(&path).expect("open");
    let exe = std::env::current_exe().expect("the bench binary's path");
    let mut child = Command::new(exe)
        .env(WATCHER_DB, &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the watcher process");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let ready = lines.next().expect("the watcher says ready").expect("read");
    assert_eq!(ready, "ready");

    let key = Key::new(SAMPLE_KIND, "", "sample");
    for _ in 0..SAMPLES {
        thread::sleep(INTERVAL);
        let value = format!("{{\"written_ns\":{}}}", now_nanos());
        store
            .commit(&[Op::Put {
                key: key.clone(),
                value,
            }])
            .expect("write a sample");
    }
    let result = lines.next().expect("the watcher's result").expect("read");
    assert!(child.wait().expect("wait for the watcher").success());
    println!("{result}");
}

/// A value about the size of a real NetworkPolicy document.
fn policy_json(i: usize) -> String {
    format!(
        "{{\"apiVersion\":\"projectcalico.org/v3\",\"kind\":\"NetworkPolicy\",\
         \"metadata\":{{\"name\":\"policy-{i}\",\"namespace\":\"ns-{}\"}},\
         \"spec\":{{\"order\":{i},\"selector\":\"app == 'web-{i}'\",\"types\":[\"Ingress\"],\
         \"ingress\":[{{\"action\":\"Allow\",\"protocol\":\"TCP\",\
         \"source\":{{\"selector\":\"role == 'frontend'\"}},\"destination\":{{\"ports\":[80,443]}}}}]}}}}",
        i % 50
    )
}

fn commit_10k(dir: &ScratchDir) {
    const OPS: usize = 10_000;
    let store = SqliteStore::open(dir.file("commit-10k")).expect("open");
    let ops: Vec<Op> = (0..OPS)
        .map(|i| Op::Put {
            key: Key::new(
                "NetworkPolicy",
                format!("ns-{}", i % 50),
                format!("policy-{i}"),
            ),
            value: policy_json(i),
        })
        .collect();
    let started = Instant::now();
    store.commit(&ops).expect("commit of 10,000 puts");
    let fresh = started.elapsed();
    // The same again, now replacing every object (each op also reads and logs the old value).
    let started = Instant::now();
    store.commit(&ops).expect("commit of 10,000 overwrites");
    let overwrite = started.elapsed();
    println!(
        "{{\"bench\":\"sqlite_commit_10k\",\"ms\":{:.1},\"overwrite_ms\":{:.1}}}",
        fresh.as_secs_f64() * 1e3,
        overwrite.as_secs_f64() * 1e3
    );
}
