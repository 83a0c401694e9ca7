//! Two real agents (`tabby node run` in their own host namespaces) on a real 3-member etcd
//! cluster that lives in a namespace of its own, reached over veths:
//! - the whole cluster stops: both agents keep the `inet tabby` table exactly as it was and
//!   real traffic keeps its verdicts, while `/readyz`, `/metrics` and `tabby node status` say
//!   not ready, naming the datastore error; the cluster returns, the agents resume their
//!   watches (no re-list) and a policy change made afterwards is enforced on both hosts;
//! - an agent given the wrong CA for a TLS member says so and keeps trying; with the right
//!   files it runs;
//! - one agent is cut off from etcd while the others write and compact the history it still
//!   needed: back online it re-lists, and its table equals the one a fresh agent writes.
//!
//! Needs root. Without it the test says it was skipped; under `CI=true` that is a failure.

#[path = "support/host.rs"]
mod host;
#[path = "support/traffic.rs"]
mod traffic;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tabby_dataplane::NetNs;
use tabby_store::conformance::etcd::make_certificates;
use tabby_store::etcd::server::{ClusterSpec, EtcdCluster};
use tabby_test_util::{ScratchDir, run_with_stdin};

use crate::host::{Agent, TABBY, text};
use crate::traffic::{Listener, http_get, tcp_probe};

const HEALTH: &str = "127.0.0.1:9099";
const DEADLINE: Duration = Duration::from_secs(40);
/// Where the members listen, on the etcd namespace's loopback.
const ETCD_IP: [u8; 4] = [10, 98, 255, 1];
const ETCD_PORTS: [(u16, u16); 3] = [(2379, 2380), (12379, 12380), (22379, 22380)];

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", text(&out));
}

fn in_ns(ns: &NetNs, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args(args)
        .output()
        .expect("ip netns exec")
}

/// `tabby --datastore URL ARGS` from inside the etcd namespace; must succeed.
fn tabby(etcd_ns: &NetNs, url: &str, args: &[&str], stdin: &str) -> String {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", etcd_ns.name(), TABBY, "--datastore", url])
        .args(args);
    let out = run_with_stdin(cmd, stdin);
    assert!(out.status.success(), "tabby {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One host: its namespace, reached from the etcd namespace over veth `ds{n}`, and three
/// workloads a, b, c at 10.66.n.1-3 with a listener on b.
struct Host {
    n: u8,
    ns: NetNs,
    a: NetNs,
    c: NetNs,
    // Declared before its namespace: the listener stops first.
    _listener: Listener,
    _b: NetNs,
}

impl Host {
    fn new(n: u8, etcd_ns: &NetNs) -> Self {
        let ns = host::host_namespace(&format!("tbe-h{n}"));
        let (outside, here) = (format!("ds{n}"), format!("10.98.{n}.1"));
        ip(&[
            "-n",
            etcd_ns.name(),
            "link",
            "add",
            &outside,
            "type",
            "veth",
            "peer",
            "name",
            "ds0",
            "netns",
            ns.name(),
        ]);
        ip(&[
            "-n",
            etcd_ns.name(),
            "addr",
            "add",
            &format!("{here}/30"),
            "dev",
            &outside,
        ]);
        ip(&["-n", etcd_ns.name(), "link", "set", &outside, "up"]);
        ip(&[
            "-n",
            ns.name(),
            "addr",
            "add",
            &format!("10.98.{n}.2/30"),
            "dev",
            "ds0",
        ]);
        ip(&["-n", ns.name(), "link", "set", "ds0", "up"]);
        ip(&[
            "-n",
            ns.name(),
            "route",
            "add",
            "10.98.255.1/32",
            "via",
            &here,
        ]);
        let a = host::plumb(&ns, "tba", &format!("10.66.{n}.1"));
        let b = host::plumb(&ns, "tbb", &format!("10.66.{n}.2"));
        let c = host::plumb(&ns, "tbc", &format!("10.66.{n}.3"));
        let listener = Listener::start(&b, 8080);
        Self {
            n,
            ns,
            a,
            c,
            _listener: listener,
            _b: b,
        }
    }

    fn node(&self) -> String {
        format!("node-{}", self.n)
    }

    fn start_agent(&self, url: &str, dir: &Path) -> Agent {
        let log = std::fs::File::create(dir.join(format!("agent-{}.log", self.n))).expect("log");
        let lock = dir.join(format!("lock-{}", self.n));
        std::fs::create_dir_all(&lock).expect("lock dir");
        let child = Command::new("ip")
            .args(["netns", "exec", self.ns.name(), TABBY, "--datastore", url])
            .args(["node", "run", "--name", &self.node(), "--lock-dir"])
            .arg(&lock)
            .args(["--metrics-addr", HEALTH])
            .env("TABBY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tabby node run");
        Agent(child)
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.ns, HEALTH, path)
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// (a->b:8080 allowed, c->b:8080 allowed).
    fn verdicts(&self) -> (bool, bool) {
        let b = Ipv4Addr::new(10, 66, self.n, 2);
        (tcp_probe(&self.a, b, 8080), tcp_probe(&self.c, b, 8080))
    }

    /// The `inet tabby` table without counters and handles: what the agent programmed.
    fn table(&self) -> String {
        let out = in_ns(&self.ns, &["nft", "list", "table", "inet", "tabby"]);
        assert!(out.status.success(), "no tabby table: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(without_counters)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait(&self, what: &str, dir: &Path, done: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < DEADLINE,
                "{}: {what} did not happen within {DEADLINE:?}\nreadyz: {:?}\nagent log:\n{}",
                self.node(),
                self.get("/readyz"),
                std::fs::read_to_string(dir.join(format!("agent-{}.log", self.n)))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn ready(&self) -> bool {
        matches!(self.get("/readyz"), Some((200, _)))
    }

    /// `/readyz` answers 503 because of the datastore, while the program stays.
    fn not_ready_but_enforcing(&self) -> bool {
        matches!(self.get("/readyz"), Some((503, body)) if body.contains("still enforcing"))
    }
}

/// A rule without its `counter packets N bytes M`, which traffic changes.
fn without_counters(line: &str) -> String {
    let Some(at) = line.find("counter packets ") else {
        return line.to_owned();
    };
    let rest: Vec<&str> = line[at..].splitn(6, ' ').collect();
    format!(
        "{}counter {}",
        &line[..at],
        rest.get(5).copied().unwrap_or("")
    )
}

fn resources(hosts: &[Host]) -> String {
    let mut out = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: lab}\n");
    for h in hosts {
        for (i, w) in ["a", "b", "c"].iter().enumerate() {
            out += &format!(
                "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n\
metadata: {{name: node--{n}-k8s-{w}-eth0, namespace: lab, labels: {{app: {w}}}}}\n\
spec: {{node: node-{n}, interfaceName: tb{w}, ipNetworks: [10.66.{n}.{ip}/32], profiles: [kns.lab]}}\n",
                n = h.n,
                ip = i + 1,
            );
        }
    }
    out
}

fn policy(from: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: b-ingress, namespace: lab}}\n\
spec:\n  selector: app == 'b'\n  types: [Ingress]\n  ingress:\n  - {{action: Allow, protocol: TCP, source: {{selector: app == '{from}'}}, destination: {{ports: [8080]}}}}\n"
    )
}

/// Blocks (`cut = true`) or restores host `h`'s traffic to and from the members, in a table
/// of the test's own: the agent's connections are reset, new ones refused.
fn cut_off(h: &Host, cut: bool) {
    let script = if cut {
        "table inet tbecut {\n chain out { type filter hook output priority 0; ip daddr 10.98.255.1 meta l4proto tcp reject with tcp reset; }\n chain in { type filter hook input priority 0; ip saddr 10.98.255.1 drop; }\n}\n"
    } else {
        "delete table inet tbecut\n"
    };
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", h.ns.name(), "nft", "-f", "-"]);
    let out = run_with_stdin(cmd, script);
    assert!(out.status.success(), "nft: {}", text(&out));
}

/// The namespace the members live in, their address on its loopback.
fn etcd_namespace() -> NetNs {
    let ns = NetNs::new("tbe-etcd").expect("etcd namespace");
    ip(&["-n", ns.name(), "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        ns.name(),
        "addr",
        "add",
        "10.98.255.1/32",
        "dev",
        "lo",
    ]);
    ns
}

fn start_cluster(ns: &NetNs, dir: &Path, members: usize) -> EtcdCluster {
    let addresses: Vec<(SocketAddr, SocketAddr)> = ETCD_PORTS[..members]
        .iter()
        .map(|(c, p)| {
            (
                SocketAddr::from((ETCD_IP, *c)),
                SocketAddr::from((ETCD_IP, *p)),
            )
        })
        .collect();
    let spec = ClusterSpec::new(dir.join("etcd"), &addresses);
    // Started from a thread in the namespace: the members live there and the readiness
    // checks reach them.
    ns.run(|| EtcdCluster::start(spec))
        .expect("enter the etcd namespace")
        .expect("an etcd cluster")
}

fn etcdctl(ns: &NetNs, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "etcdctl"])
        .env("ETCDCTL_API", "3")
        .arg("--endpoints=http://10.98.255.1:2379")
        .args(args)
        .output()
        .expect("etcdctl");
    assert!(out.status.success(), "etcdctl {args:?}: {}", text(&out));
}

/// Writes the host's resources and a policy allowing only `a` to reach `b`, then waits until
/// the host's agent is ready and enforces it.
fn apply_and_see_enforced(host: &Host, etcd_ns: &NetNs, url: &str, dir: &Path) {
    tabby(
        etcd_ns,
        url,
        &["apply", "-f", "-"],
        &resources(std::slice::from_ref(host)),
    );
    tabby(etcd_ns, url, &["apply", "-f", "-"], &policy("a"));
    host.wait("ready", dir, Host::ready);
    host.wait("the policy enforced", dir, |h| {
        h.verdicts() == (true, false)
    });
}

/// `/readyz` answers 503 with a body containing every one of `words`.
fn not_ready_saying(h: &Host, words: &[&str]) -> bool {
    matches!(h.get("/readyz"), Some((503, body)) if words.iter().all(|w| body.contains(w)))
}

/// An agent started before etcd, then facing a prefix that holds someone else's keys: it
/// keeps running, `/readyz`, `/status` and `tabby node status` say why it cannot start, with
/// a capped wait between attempts, and it starts enforcing once the problem is gone.
#[test]
fn an_agent_that_cannot_open_etcd_says_why_retries_and_starts_once_it_can() {
    if !tabby_test_util::root_or_skip(
        "an_agent_that_cannot_open_etcd_says_why_retries_and_starts_once_it_can",
    ) {
        return;
    }
    let dir = ScratchDir::new("node-etcd-open");
    let etcd_ns = etcd_namespace();
    let host = Host::new(1, &etcd_ns);
    let url = "etcd://10.98.255.1:2379/tabby-a";

    // Nothing listens yet.
    let mut agent = host.start_agent(url, dir.path());
    host.wait("not ready, naming the member", dir.path(), |h| {
        not_ready_saying(
            h,
            &[
                "cannot open the datastore",
                "10.98.255.1:2379",
                "next attempt in",
            ],
        )
    });
    let status = in_ns(
        &host.ns,
        &[TABBY, "node", "status", "--addr", HEALTH, "-o", "json"],
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let retry = status["datastore"]["retry_in_ms"]
        .as_u64()
        .expect("a retry");
    assert!(retry <= 10_000, "the backoff is capped: {status}");
    let table = in_ns(&host.ns, &[TABBY, "node", "status", "--addr", HEALTH]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains("nothing programmed yet")
            && table.contains("datastore error: cannot open the datastore"),
        "{table}"
    );

    // etcd starts, but the prefix holds someone else's keys (written while the agent is cut
    // off, so it never sees the prefix empty).
    cut_off(&host, true);
    let cluster = start_cluster(&etcd_ns, dir.path(), 1);
    etcdctl(&etcd_ns, &["put", "/tabby-a/theirs", "x"]);
    cut_off(&host, false);
    host.wait("not ready, naming the foreign prefix", dir.path(), |h| {
        not_ready_saying(h, &["/tabby-a", "not tabby's", "/tabby-a/theirs"])
    });
    assert!(
        agent.0.try_wait().expect("agent state").is_none(),
        "the agent keeps running"
    );
    // At least once unreachable and once refused for the prefix.
    let errors = host.metric("tabby_errors_total{kind=\"datastore\"}");
    assert!(errors >= Some(2.0), "it retried: {errors:?}");

    // The foreign key goes: the agent opens the datastore and enforces what it holds.
    etcdctl(&etcd_ns, &["del", "/tabby-a/theirs"]);
    apply_and_see_enforced(&host, &etcd_ns, url, dir.path());
    drop(agent);
    drop(cluster);
}

/// An agent given the wrong CA for a TLS member: it keeps running, not ready, and `/readyz`
/// and `tabby node status` name the TLS failure and the `ca=` option to check; given the
/// right files it opens the datastore and enforces.
#[test]
fn an_agent_with_the_wrong_etcd_ca_says_so_and_runs_with_the_right_one() {
    if !tabby_test_util::root_or_skip(
        "an_agent_with_the_wrong_etcd_ca_says_so_and_runs_with_the_right_one",
    ) {
        return;
    }
    let dir = ScratchDir::new("node-etcd-tls");
    let certs = dir.path().join("certs");
    let other = dir.path().join("other");
    for d in [&certs, &other] {
        std::fs::create_dir_all(d).expect("certificate dir");
    }
    let server_ip = IpAddr::from(ETCD_IP);
    make_certificates(&certs, "ca", server_ip);
    // A CA that signed nothing the member shows.
    make_certificates(&other, "other-ca", server_ip);
    let etcd_ns = etcd_namespace();
    let host = Host::new(1, &etcd_ns);
    let (client, peer) = ETCD_PORTS[0];
    let spec = ClusterSpec::new(
        dir.path().join("etcd"),
        &[(
            SocketAddr::from((ETCD_IP, client)),
            SocketAddr::from((ETCD_IP, peer)),
        )],
    )
    .with_client_tls(
        certs.join("server.pem"),
        certs.join("server.key"),
        Some(certs.join("ca.pem")),
    )
    .expect("health ports");
    let cluster = etcd_ns
        .run(|| EtcdCluster::start(spec))
        .expect("enter the etcd namespace")
        .expect("a TLS member");
    let files = |ca: &Path| {
        format!(
            "?ca={}&cert={}&key={}",
            ca.display(),
            certs.join("client.pem").display(),
            certs.join("client.key").display()
        )
    };
    let base = "etcds://10.98.255.1:2379/tabby-tls";

    let wrong = format!("{base}{}", files(&other.join("other-ca.pem")));
    let agent = host.start_agent(&wrong, dir.path());
    host.wait("not ready, naming the CA", dir.path(), |h| {
        not_ready_saying(h, &["cannot open the datastore", "ca="])
    });
    let table = in_ns(&host.ns, &[TABBY, "node", "status", "--addr", HEALTH]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains("datastore error") && table.contains("ca="),
        "{table}"
    );
    let (_, body) = host.get("/readyz").expect("readyz answers");
    assert!(
        body.contains("TLS") || body.contains("certificate"),
        "says it is TLS: {body}"
    );
    assert!(
        !body.contains("BEGIN"),
        "never prints key or certificate material: {body}"
    );
    drop(agent);

    let right = format!("{base}{}", files(&certs.join("ca.pem")));
    let agent = host.start_agent(&right, dir.path());
    apply_and_see_enforced(&host, &etcd_ns, &right, dir.path());
    drop(agent);
    drop(cluster);
}

#[test]
fn agents_on_etcd_keep_enforcing_through_an_outage_and_converge_after() {
    if !tabby_test_util::root_or_skip(
        "agents_on_etcd_keep_enforcing_through_an_outage_and_converge_after",
    ) {
        return;
    }
    let dir = ScratchDir::new("node-etcd");
    let etcd_ns = etcd_namespace();
    let hosts = [Host::new(1, &etcd_ns), Host::new(2, &etcd_ns)];
    let mut cluster = start_cluster(&etcd_ns, dir.path(), 3);
    let url = cluster.url("");

    tabby(&etcd_ns, &url, &["apply", "-f", "-"], &resources(&hosts));
    tabby(&etcd_ns, &url, &["apply", "-f", "-"], &policy("a"));
    let mut agents: Vec<Agent> = hosts
        .iter()
        .map(|h| h.start_agent(&url, dir.path()))
        .collect();
    for h in &hosts {
        h.wait("ready", dir.path(), Host::ready);
        assert_eq!(
            h.verdicts(),
            (true, false),
            "{}: a allowed, c denied",
            h.node()
        );
    }
    let tables: Vec<String> = hosts.iter().map(Host::table).collect();

    // The whole cluster stops.
    for i in 0..cluster.size() {
        cluster.stop(i);
    }
    for h in &hosts {
        h.wait(
            "not ready, still enforcing",
            dir.path(),
            Host::not_ready_but_enforcing,
        );
        assert_eq!(h.metric("tabby_in_sync"), Some(0.0));
        assert_eq!(h.metric("tabby_ready"), Some(0.0));
        let status = in_ns(
            &h.ns,
            &[TABBY, "node", "status", "--addr", HEALTH, "-o", "json"],
        );
        assert!(status.status.success(), "{}", text(&status));
        let status: serde_json::Value =
            serde_json::from_slice(&status.stdout).expect("status is JSON");
        let error = status["datastore"]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("10.98.255.1") && status["datastore"]["in_sync"] == false,
            "the status names the datastore and its error: {status}"
        );
        let table = in_ns(&h.ns, &[TABBY, "node", "status", "--addr", HEALTH]);
        let table = String::from_utf8_lossy(&table.stdout).into_owned();
        assert!(
            table.contains("datastore: NOT in sync") && table.contains("datastore error: "),
            "{table}"
        );
    }
    // The outage lasts: the agents back off, keep running, and enforce what they had.
    std::thread::sleep(Duration::from_secs(3));
    for (h, (agent, table)) in hosts.iter().zip(agents.iter_mut().zip(&tables)) {
        assert!(
            agent.0.try_wait().expect("agent state").is_none(),
            "{} exited during the outage",
            h.node()
        );
        assert_eq!(&h.table(), table, "{}: the table changed", h.node());
        assert_eq!(
            h.verdicts(),
            (true, false),
            "{}: verdicts changed",
            h.node()
        );
    }

    // The cluster returns: the watches resume, and a change made now is enforced everywhere.
    etcd_ns
        .run(|| {
            for i in 0..cluster.size() {
                cluster.restart(i)?;
            }
            cluster.wait_ready(Duration::from_secs(30))
        })
        .expect("enter the etcd namespace")
        .expect("the cluster is back");
    for h in &hosts {
        h.wait("ready again", dir.path(), Host::ready);
        assert_eq!(
            h.metric("tabby_resyncs_total"),
            Some(1.0),
            "{}: the watch resumed rather than re-listed",
            h.node()
        );
    }
    tabby(&etcd_ns, &url, &["apply", "-f", "-"], &policy("c"));
    for h in &hosts {
        h.wait("the new policy enforced", dir.path(), |h| {
            h.verdicts() == (false, true)
        });
    }

    // Host 1 is cut off while the history it still needs is written and compacted away.
    let (cut, other) = (&hosts[0], &hosts[1]);
    cut_off(cut, true);
    cut.wait(
        "not ready while cut off",
        dir.path(),
        Host::not_ready_but_enforcing,
    );
    assert!(other.ready(), "host 2 still reaches etcd");
    tabby(&etcd_ns, &url, &["apply", "-f", "-"], &policy("a"));
    tabby(
        &etcd_ns,
        &url,
        &[
            "delete",
            "workloadendpoint",
            "-n",
            "lab",
            "node--1-k8s-c-eth0",
        ],
        "",
    );
    let store = etcd_ns
        .run(|| tabby_store::open(&url))
        .expect("enter the etcd namespace")
        .expect("open etcd");
    let head = store.revision().expect("revision");
    store.compact(head).expect("compact");
    assert_eq!(
        cut.verdicts(),
        (false, true),
        "still the old state while cut off"
    );
    cut_off(cut, false);
    cut.wait("ready after re-listing", dir.path(), |h| {
        h.ready() && h.metric("tabby_resyncs_total") == Some(2.0)
    });
    assert!(cut.metric("tabby_errors_total{kind=\"compacted\"}") >= Some(1.0));
    cut.wait("the state from the re-list enforced", dir.path(), |h| {
        h.verdicts() == (true, false)
    });
    assert_eq!(cut.metric("tabby_local_endpoints"), Some(2.0));
    other.wait("the changes enforced by the watch", dir.path(), |h| {
        h.verdicts() == (true, false)
    });
    assert_eq!(other.metric("tabby_resyncs_total"), Some(1.0));

    // Neither a gap nor a repeat: a fresh agent for host 1 writes the same table.
    let relisted = cut.table();
    drop(agents.remove(0));
    let _fresh = cut.start_agent(&url, dir.path());
    cut.wait("a fresh agent ready", dir.path(), |h| {
        h.ready() && h.metric("tabby_resyncs_total") == Some(1.0)
    });
    assert_eq!(cut.table(), relisted, "re-listed and fresh tables differ");
    drop(store);
    drop(cluster);
}
