//! BIRD 2 as a real BGP neighbour for root tests and benchmarks: run in a network namespace
//! with a control socket of its own (so it never meets a system BIRD), asked through `birdc`,
//! killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ScratchDir;

/// How long BIRD gets to open its control socket.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Whether BIRD 2 (`bird` and `birdc`) is installed; under `CI=true` it must be
/// (scripts/deps.sh installs it), so a missing one fails rather than skips.
pub fn have_bird() -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v bird && command -v birdc"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found || std::env::var("CI").map(|v| v != "true").unwrap_or(true),
        "bird and birdc are needed (scripts/deps.sh installs bird2)"
    );
    found
}

/// BIRD 2 in a network namespace, killed on drop.
#[derive(Debug)]
pub struct Bird {
    child: Child,
    netns: String,
    sock: String,
}

impl Bird {
    /// Writes `conf` as `<name>.conf` in `dir` and runs BIRD with it in namespace `netns`,
    /// in the foreground; returns once its control socket answers.
    pub fn start(dir: &ScratchDir, netns: &str, name: &str, conf: &str) -> Self {
        let path = dir.path().join(format!("{name}.conf"));
        std::fs::write(&path, conf).expect("write bird.conf");
        let sock = dir
            .path()
            .join(format!("{name}.ctl"))
            .to_string_lossy()
            .into_owned();
        // `ip netns exec` execs BIRD in place: the child is BIRD, so its pid is BIRD's.
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "bird", "-f", "-c"])
            .arg(&path)
            .args(["-s", &sock])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bird");
        let bird = Self {
            child,
            netns: netns.to_owned(),
            sock,
        };
        bird.wait("its control socket", START_LIMIT, |b| {
            !b.birdc("show status").is_empty()
        });
        bird
    }

    /// A `birdc` command's output (empty when BIRD does not answer).
    pub fn birdc(&self, cmd: &str) -> String {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "birdc", "-s", &self.sock, cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// How many routes of protocol `p` BIRD's table holds.
    pub fn routes_of(&self, p: &str) -> usize {
        self.birdc(&format!("show route protocol {p} count"))
            .lines()
            .find_map(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Whether BGP protocol `p` is Established.
    pub fn established(&self, p: &str) -> bool {
        self.birdc(&format!("show protocols {p}"))
            .contains("Established")
    }

    /// Polls `done` until it holds; panics naming `what` after `limit`, with BIRD's view of
    /// its protocols.
    pub fn wait(&self, what: &str, limit: Duration, done: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < limit,
                "BIRD: timed out waiting for {what}\n{}",
                self.birdc("show protocols all")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// BIRD's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
