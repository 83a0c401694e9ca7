//! Two network namespaces joined by a veth pair, the daemons started in them, and the guard that
//! removes it all (also when a test panics).

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use tabby_test_util::{ScratchDir, sh, veth_eth0};

/// Whether root-only tests can run here. Not root: skip, except under CI, where it is a
/// failure (CI runs as root and must run them).
#[expect(clippy::print_stdout, reason = "tests report why they were skipped")]
pub(crate) fn can_run(test: &str, tools: &[&str]) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .expect("running id -u");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        assert!(!ci, "{test}: needs root, and CI=true");
        println!("{test}: skipped (needs root for network namespaces)");
        return false;
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                !ci,
                "{test}: {tool} is missing (scripts/deps.sh installs it)"
            );
            println!("{test}: skipped ({tool} missing; run scripts/deps.sh)");
            return false;
        }
    }
    true
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

/// Namespace `tabby` (where the speaker runs, address `<net>.1`) and `peer` (the daemon,
/// `<net>.2`), on a /24 of the given prefix, plus IPv6 `2001:db8:<tag>::1` and `::2` /64.
pub(crate) struct Topo {
    pub(crate) tabby_ns: String,
    pub(crate) peer_ns: String,
    pub(crate) tabby_v4: String,
    pub(crate) peer_v4: String,
    pub(crate) tabby_v6: String,
    pub(crate) peer_v6: String,
    pub(crate) dir: ScratchDir,
    children: Vec<Child>,
}

impl Topo {
    pub(crate) fn new(test: &str, net: &str, v6tag: &str) -> Self {
        let pid = std::process::id();
        let topo = Self {
            tabby_ns: format!("tbgp-{test}-{pid}-t"),
            peer_ns: format!("tbgp-{test}-{pid}-p"),
            tabby_v4: format!("{net}.1"),
            peer_v4: format!("{net}.2"),
            tabby_v6: format!("2001:db8:{v6tag}::1"),
            peer_v6: format!("2001:db8:{v6tag}::2"),
            dir: ScratchDir::new(&format!("bgp-{test}")),
            children: Vec::new(),
        };
        // From here on, Drop cleans up whatever was made.
        for ns in [&topo.tabby_ns, &topo.peer_ns] {
            let _ = run(&["ip", "netns", "del", ns]);
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        veth_eth0(&topo.tabby_ns, &topo.peer_ns);
        for (ns, v4, v6) in [
            (&topo.tabby_ns, &topo.tabby_v4, &topo.tabby_v6),
            (&topo.peer_ns, &topo.peer_v4, &topo.peer_v6),
        ] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                "eth0",
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        }
        topo
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts a daemon in the peer namespace; it is killed on drop.
    pub(crate) fn spawn_in_peer(&mut self, args: &[&str], log: &str) {
        let log = File::create(self.path(log)).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.peer_ns])
            .args(args)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {args:?}: {e}"));
        self.children.push(child);
    }

    /// Runs a command in the peer namespace.
    pub(crate) fn in_peer(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "netns", "exec", &self.peer_ns];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Runs `body` on a thread inside the tabby namespace, with its own tokio runtime (sockets
    /// made there belong to the namespace).
    pub(crate) fn run_in_tabby<F, Fut>(&self, body: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let ns = format!("/run/netns/{}", self.tabby_ns);
        let thread = std::thread::spawn(move || {
            let file = File::open(&ns).unwrap_or_else(|e| panic!("opening {ns}: {e}"));
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(body());
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for Topo {
    #[expect(
        clippy::print_stdout,
        reason = "a failing test shows the daemons' logs"
    )]
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(entries) = std::fs::read_dir(self.dir.path())
        {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                println!("==== {}\n{text}", entry.path().display());
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.tabby_ns, &self.peer_ns] {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// Polls `check` until it returns `Some`, or fails with `what` after `limit`.
pub(crate) async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
