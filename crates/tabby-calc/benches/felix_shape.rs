//! The calc engine at the scale Felix's own calc-graph benchmarks use, and past it: 250,000
//! endpoints in 1,000 namespaces, 200 of them on this host, 10,000 policies.
//!
//! Prints one JSON line per figure and asserts nothing about speed. Run with
//! `cargo bench -p tabby-calc --bench felix_shape`. Figures:
//! - initial computation: every resource applied, in-sync, first flush (engine time only;
//!   generating the resources is not counted), with the process's peak RSS;
//! - one endpoint label change to its deltas (apply + flush), p50/p99, for remote endpoints
//!   whose namespace has local policy (so IP sets change) and for local endpoints;
//! - sustained endpoint updates: relabels applied back to back, flushed every 1,000, per second.

#![expect(clippy::print_stdout, reason = "a bench reports its figures on stdout")]

use std::time::{Duration, Instant};

// The allocator the `tabby` binary uses, so that the figures are the agent's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use serde_json::{Value, json};
use tabby_calc::{Delta, Engine, Update};
use tabby_model::node::WorkloadEndpointSpec;
use tabby_model::values::Labels;
use tabby_model::{Kind, Object, ObjectMeta, Resource};
use tabby_test_util::Dice;

const NAMESPACES: usize = 1_000;
const PER_NAMESPACE: usize = 250;
const POLICIES_PER_NAMESPACE: usize = 10;
const NODES: usize = 1_250;
const HOST: &str = "node-0";
const APPS: usize = 10;

fn resource(kind: Kind, body: Value) -> Resource {
    Resource::from_body(kind, body).expect("bench resources are valid")
}

fn namespace(i: usize) -> Resource {
    resource(
        Kind::Namespace,
        json!({"metadata": {"name": format!("ns-{i}"), "labels": {
            "team": format!("team-{}", i % 20),
            "env": if i.is_multiple_of(2) { "prod" } else { "dev" },
        }}}),
    )
}

/// Endpoint `j` of namespace `i`: global index `i * PER_NAMESPACE + j` picks its node, so one
/// endpoint in every 1,250 (200 in all) lands on this host.
fn endpoint(i: usize, j: usize, app: usize) -> Resource {
    let index = i * PER_NAMESPACE + j;
    let ns = format!("ns-{i}");
    let mut labels = Labels::new();
    labels.insert("app".into(), format!("app-{app}"));
    labels.insert("version".into(), format!("v{}", j % 3));
    labels.insert("tier".into(), ["web", "api", "db"][j % 3].into());
    labels.insert(
        "pod-template-hash".into(),
        format!("{:08x}", index * 2_654_435_761 % (1 << 32)),
    );
    let name = format!("pod-{j}");
    Resource::WorkloadEndpoint(Object {
        metadata: ObjectMeta {
            name: format!("node--{}-k8s-{name}-eth0", index % NODES),
            namespace: Some(ns.clone()),
            labels,
            ..ObjectMeta::default()
        },
        spec: WorkloadEndpointSpec {
            orchestrator: Some("k8s".into()),
            node: format!("node-{}", index % NODES),
            pod: Some(name.clone()),
            endpoint: Some("eth0".into()),
            interface_name: tabby_model::node::workload_interface_name(&ns, &name),
            ip_networks: vec![format!(
                "10.{}.{}.{}/32",
                index >> 16,
                (index >> 8) & 0xff,
                index & 0xff
            )],
            profiles: vec![format!("kns.{ns}")],
            service_account_name: Some("default".into()),
            ..WorkloadEndpointSpec::default()
        },
        status: None,
    })
}

/// Policies in the shape Kubernetes NetworkPolicy conversion produces: each selects one app
/// of its namespace and allows ingress from two others (one via a namespace selector) on a
/// port, and egress to one app and to the outside world.
fn policy(i: usize, k: usize) -> Resource {
    let app = |n: usize| format!("app == 'app-{}'", n % APPS);
    resource(
        Kind::NetworkPolicy,
        json!({
            "metadata": {"name": format!("allow-{k}"), "namespace": format!("ns-{i}")},
            "spec": {
                "order": 1000 + k,
                "selector": app(k),
                "types": ["Ingress", "Egress"],
                "ingress": [
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"selector": app(k + 1)},
                     "destination": {"ports": [8080, "9000:9100"]}},
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"selector": app(k + 2),
                                "namespaceSelector": format!("team == 'team-{}'", (i + k) % 20)},
                     "destination": {"ports": [443]}},
                ],
                "egress": [
                    {"action": "Allow", "protocol": "TCP",
                     "destination": {"selector": app(k + 3), "ports": [5432]}},
                    {"action": "Allow", "destination": {"nets": ["0.0.0.0/0"], "notNets": ["10.0.0.0/8"]}},
                ],
            }
        }),
    )
}

fn global_policies() -> Vec<Resource> {
    (0..10)
        .map(|g| {
            resource(
                Kind::GlobalNetworkPolicy,
                json!({
                    "metadata": {"name": format!("platform-{g}")},
                    "spec": {
                        "order": 10 + g,
                        "selector": format!("tier == '{}'", ["web", "api", "db"][g % 3]),
                        "namespaceSelector": "env == 'prod'",
                        "types": ["Ingress"],
                        "ingress": [{"action": "Deny", "protocol": "TCP",
                                     "source": {"namespaceSelector": format!("team == 'team-{g}'")},
                                     "destination": {"ports": [22]}},
                                    {"action": "Pass"}],
                    }
                }),
            )
        })
        .collect()
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time this thread has run, from the scheduler's own accounting: unlike wall time it
/// does not grow when other processes compete for the cores.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1e6
}

fn main() {
    let rss_before = rss_kib("VmRSS:");
    let mut engine = Engine::new(HOST);
    let mut engine_time = Duration::ZERO;
    let mut engine_cpu = Duration::ZERO;
    // Resources are made a namespace at a time, outside the timed part, so that neither
    // making them nor reading the clock dominates what is measured.
    let mut timed = |engine: &mut Engine, batch: Vec<Resource>| {
        let (start, cpu) = (Instant::now(), thread_cpu());
        for r in batch {
            engine.apply(Update::upsert(r));
        }
        engine_time += start.elapsed();
        engine_cpu += thread_cpu() - cpu;
    };
    for i in 0..NAMESPACES {
        let mut batch = vec![namespace(i)];
        batch.extend((0..POLICIES_PER_NAMESPACE).map(|k| policy(i, k)));
        batch.extend((0..PER_NAMESPACE).map(|j| endpoint(i, j, j % APPS)));
        timed(&mut engine, batch);
    }
    timed(&mut engine, global_policies());
    let apply_time = engine_time;
    let (start, cpu) = (Instant::now(), thread_cpu());
    engine.set_in_sync();
    let deltas = engine.flush();
    let flush_time = start.elapsed();
    engine_time += flush_time;
    engine_cpu += thread_cpu() - cpu;
    let stats = engine.stats();
    let peak = rss_kib("VmHWM:");
    println!(
        "{}",
        json!({
            "bench": "calc_initial",
            "endpoints": stats.endpoints,
            "local_endpoints": stats.local_endpoints,
            "policies": stats.policies,
            "active_policies": stats.active_policies,
            "ip_sets": stats.ip_sets,
            "routes": stats.routes,
            "deltas": deltas.len(),
            "seconds": engine_time.as_secs_f64(),
            "cpu_seconds": engine_cpu.as_secs_f64(),
            "apply_seconds": apply_time.as_secs_f64(),
            "first_flush_seconds": flush_time.as_secs_f64(),
            "peak_rss_mib": peak / 1024,
            "rss_before_mib": rss_before / 1024,
        })
    );
    drop(deltas);
    // For profiling the initial load alone.
    if std::env::var_os("TABBY_BENCH_INITIAL_ONLY").is_some() {
        return;
    }

    // Label changes: remote endpoints in namespaces that have a local endpoint (their policies
    // are active, so the change moves IP set members), and local endpoints (their policy lists
    // change).
    let local_namespaces: Vec<usize> = (0..NAMESPACES)
        .filter(|i| (0..PER_NAMESPACE).any(|j| (i * PER_NAMESPACE + j).is_multiple_of(NODES)))
        .collect();
    let mut rng = Dice(7);
    let mut app_of = vec![0usize; NAMESPACES * PER_NAMESPACE];
    for (index, app) in app_of.iter_mut().enumerate() {
        *app = (index % PER_NAMESPACE) % APPS;
    }
    let mut relabel = |rng: &mut Dice, i: usize, j: usize| {
        let index = i * PER_NAMESPACE + j;
        app_of[index] = (app_of[index] + 1 + rng.below(APPS - 1)) % APPS;
        endpoint(i, j, app_of[index])
    };
    for (name, local) in [
        ("calc_label_change_remote", false),
        ("calc_label_change_local", true),
    ] {
        let mut samples = Vec::new();
        let mut set_changes = 0usize;
        for _ in 0..5_000 {
            let i = local_namespaces[rng.below(local_namespaces.len())];
            let j = if local {
                match (0..PER_NAMESPACE).find(|j| (i * PER_NAMESPACE + j).is_multiple_of(NODES)) {
                    Some(j) => j,
                    None => continue,
                }
            } else {
                loop {
                    let j = rng.below(PER_NAMESPACE);
                    if !(i * PER_NAMESPACE + j).is_multiple_of(NODES) {
                        break j;
                    }
                }
            };
            let r = relabel(&mut rng, i, j);
            let start = Instant::now();
            engine.apply(Update::upsert(r));
            let deltas = engine.flush();
            samples.push(start.elapsed());
            set_changes += deltas
                .iter()
                .filter(|d| matches!(d, Delta::IpSetMembers { .. }))
                .count();
        }
        println!(
            "{}",
            json!({
                "bench": name,
                "samples": samples.len(),
                "ip_set_member_deltas": set_changes,
                "p50_us": percentile(&mut samples, 0.50),
                "p99_us": percentile(&mut samples, 0.99),
                "max_us": percentile(&mut samples, 1.0),
            })
        );
    }

    // Sustained updates across the whole cluster, flushed in batches as a syncer would.
    let updates: Vec<Resource> = (0..100_000)
        .map(|_| {
            let i = rng.below(NAMESPACES);
            let j = rng.below(PER_NAMESPACE);
            relabel(&mut rng, i, j)
        })
        .collect();
    let count = updates.len();
    let (start, cpu) = (Instant::now(), thread_cpu());
    let mut emitted = 0usize;
    for (n, r) in updates.into_iter().enumerate() {
        engine.apply(Update::upsert(r));
        if n % 1_000 == 999 {
            emitted += engine.flush().len();
        }
    }
    emitted += engine.flush().len();
    let elapsed = start.elapsed();
    let cpu = thread_cpu() - cpu;
    println!(
        "{}",
        json!({
            "bench": "calc_sustained_updates",
            "updates": count,
            "deltas": emitted,
            "seconds": elapsed.as_secs_f64(),
            "updates_per_second": count as f64 / elapsed.as_secs_f64(),
            "cpu_seconds": cpu.as_secs_f64(),
            "updates_per_cpu_second": count as f64 / cpu.as_secs_f64(),
        })
    );
}
