//! Shared by the BGP root tests of the agent: commands in namespaces, the kernel's routes, the
//! agent run in a host namespace and its `tabby node status`, and [`BirdNeighbour`], one node
//! peering with BIRD 2 in a router namespace.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tabby_dataplane::NetNs;
use tabby_test_util::bird::Bird;
pub(crate) use tabby_test_util::sh;
use tabby_test_util::{ScratchDir, veth_eth0};

use crate::host::{Agent, TABBY, tabby_ok};

pub(crate) const DEADLINE: Duration = Duration::from_secs(40);

/// Runs a command inside a namespace, which must succeed.
pub(crate) fn in_ns(ns: &NetNs, args: &[&str]) -> Output {
    let mut all = vec!["ip", "netns", "exec", ns.name()];
    all.extend_from_slice(args);
    sh(&all)
}

/// `ip route` of a namespace: (destination, gateway, protocol) for each route.
pub(crate) fn routes(ns: &NetNs) -> Vec<(String, String, String)> {
    let out = in_ns(ns, &["ip", "-j", "route", "show"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j route");
    v.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            (s("dst"), s("gateway"), s("protocol"))
        })
        .collect()
}

/// `tabby node status` run in a host namespace: its output.
pub(crate) fn status(host: &NetNs, json: bool) -> Option<String> {
    let mut args = vec![
        "ip",
        "netns",
        "exec",
        host.name(),
        TABBY,
        "node",
        "status",
        "--addr",
        "127.0.0.1:9099",
    ];
    if json {
        args.extend(["-o", "json"]);
    }
    let out = Command::new(args[0]).args(&args[1..]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `tabby node status -o json` entry of the peer at `addr`, once the agent answers.
pub(crate) fn peer_status(host: &NetNs, addr: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(&status(host, true)?).ok()?;
    v["bgp"]["peers"]
        .as_array()?
        .iter()
        .find(|p| p["address"] == addr)
        .cloned()
}

/// Polls `done` every 100 ms; after [`DEADLINE`] fails naming `what`, with `diag()`.
pub(crate) fn wait_for(what: &str, diag: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}\n{}",
            diag()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Joins two namespaces with a veth pair (`eth0` in both, /24 addresses), lo up, forwarding
/// on, and no default route.
pub(crate) fn link_pair(a: &NetNs, a_ip: &str, b: &NetNs, b_ip: &str) {
    veth_eth0(a.name(), b.name());
    for (ns, ip) in [(a, a_ip), (b, b_ip)] {
        let cidr = format!("{ip}/24");
        sh(&["ip", "-n", ns.name(), "addr", "add", &cidr, "dev", "eth0"]);
        sh(&["ip", "-n", ns.name(), "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", ns.name(), "link", "set", "lo", "up"]);
        in_ns(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }
}

/// `tabby node run` for `node` inside `host`.
pub(crate) fn run_agent(host: &NetNs, db: &Path, dir: &ScratchDir, node: &str) -> Agent {
    run_agent_with(host, db, dir, node, &[], &[])
}

/// `tabby node run` with more arguments and environment.
pub(crate) fn run_agent_with(
    host: &NetNs,
    db: &Path,
    dir: &ScratchDir,
    node: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Agent {
    Agent(
        Command::new("ip")
            .args(["netns", "exec", host.name(), TABBY, "--datastore"])
            .arg(format!("sqlite:{}", db.display()))
            .args(["node", "run", "--name", node, "--lock-dir"])
            .arg(dir.path())
            .args(["--metrics-addr", "127.0.0.1:9099"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tabby node run"),
    )
}

/// Whether a test against BIRD can run here (root and BIRD 2); says why not, and under
/// `CI=true` fails rather than skips.
pub(crate) fn root_and_bird(test: &str) -> bool {
    tabby_test_util::root_or_skip(test) && tabby_test_util::bird::have_bird()
}

/// BIRD's `protocol bgp tabby` towards the node at `host` (AS 64512), BIRD being AS `asn` at
/// `router`, quick to connect and to retry; `body` holds the rest (channels, options).
pub(crate) fn bird_bgp(host: &str, router: &str, asn: u32, body: &str) -> String {
    format!(
        "protocol bgp tabby {{ local {router} as {asn}; neighbor {host} as 64512;\n\
           connect delay time 1; connect retry time 1; error wait time 1, 2;\n\
           {body} }}\n"
    )
}

/// What a [`BirdNeighbour`] is made of; each part is given the host's and router's addresses.
pub(crate) struct BirdSetup<'a> {
    /// Names the namespaces and scratch folder.
    pub(crate) tag: &'a str,
    /// The second octet of the `10.OCTET.x.0/24` link, distinct per test.
    pub(crate) octet: u32,
    /// List items beside the node and the mesh switch (BGPPeers, Secrets, endpoints).
    pub(crate) items: &'a dyn Fn(&str, &str) -> String,
    /// BIRD's protocols after `router id` and `protocol device` (see [`bird_bgp`]).
    pub(crate) bird: &'a dyn Fn(&str, &str) -> String,
    /// Runs on the namespaces (host, router) before BIRD and the agent start.
    pub(crate) prepare: &'a dyn Fn(&NetNs, &NetNs),
}

/// One node (`node-a`, mesh off) in a host namespace at `NET.1` and BIRD 2 in a router
/// namespace at `NET.2`, with the agent running. Fields drop in order: agent, BIRD, namespaces.
pub(crate) struct BirdNeighbour {
    pub(crate) agent: RefCell<Option<Agent>>,
    pub(crate) bird: Bird,
    pub(crate) host_ns: NetNs,
    pub(crate) router_ns: NetNs,
    pub(crate) host: String,
    pub(crate) router: String,
    pub(crate) net: String,
    pub(crate) db: PathBuf,
    pub(crate) dir: ScratchDir,
}

impl BirdNeighbour {
    pub(crate) fn start(s: &BirdSetup<'_>) -> Self {
        let dir = ScratchDir::new(&format!("node-bgp-{}", s.tag));
        let db = dir.file("store");
        let net = format!("10.{}.{}", s.octet, std::process::id() % 250);
        let (host, router) = (format!("{net}.1"), format!("{net}.2"));
        tabby_ok(
            &db,
            &["apply", "-f", "-"],
            &format!(
                r"
apiVersion: v1
kind: List
items:
- {{apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {{name: default}}, spec: {{nodeToNodeMeshEnabled: false}}}}
- {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: node-a}}, spec: {{bgp: {{ipv4Address: {host}/24}}}}}}
{}",
                (s.items)(&host, &router)
            ),
        );
        let host_ns = NetNs::new(&format!("tb{}-h", s.tag)).expect("host");
        let router_ns = NetNs::new(&format!("tb{}-r", s.tag)).expect("router");
        link_pair(&host_ns, &host, &router_ns, &router);
        (s.prepare)(&host_ns, &router_ns);
        let bird = Bird::start(
            &dir,
            router_ns.name(),
            "bird",
            &format!(
                "router id {router};\nprotocol device {{ }}\n{}",
                (s.bird)(&host, &router)
            ),
        );
        let agent = run_agent(&host_ns, &db, &dir, "node-a");
        Self {
            agent: RefCell::new(Some(agent)),
            bird,
            host_ns,
            router_ns,
            host,
            router,
            net,
            db,
            dir,
        }
    }

    /// Kills the agent outright (SIGKILL) and starts it again.
    pub(crate) fn kill_and_restart_agent(&self) {
        drop(self.agent.take());
        let agent = run_agent(&self.host_ns, &self.db, &self.dir, "node-a");
        self.agent.replace(Some(agent));
    }

    /// The node's status entry for the peer at `addr`.
    pub(crate) fn peer(&self, addr: &str) -> Option<Value> {
        peer_status(&self.host_ns, addr)
    }

    /// The node's status entry for BIRD (`Null` while the agent does not answer).
    pub(crate) fn tor(&self) -> Value {
        self.peer(&self.router).unwrap_or_default()
    }

    pub(crate) fn diag(&self) -> String {
        format!(
            "status: {}\nhost routes: {:?}\nbird: {}",
            status(&self.host_ns, false).unwrap_or_default(),
            routes(&self.host_ns),
            self.bird.birdc("show protocols all tabby")
        )
    }

    pub(crate) fn bird_established(&self) -> bool {
        self.bird.established("tabby")
    }
}
