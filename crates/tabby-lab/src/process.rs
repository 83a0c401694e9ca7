//! The lab's processes (agents, workload servers): started inside a namespace, in their own
//! process group so that a terminal's Ctrl-C on `tabby lab ...` does not reach them, and found
//! again by the namespace they run in, which needs no bookkeeping to survive a crash.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tabby_dataplane::netns;

use crate::LabError;

/// A namespace's identity: the device and inode of its nsfs file.
pub(crate) type NsId = (u64, u64);

pub(crate) fn ns_id(path: &Path) -> Option<NsId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Runs a short tool (`ip`, `install`, ...) to completion with no input; `what` names it in
/// the error when it cannot be started. Its exit status is the caller's to judge.
pub(crate) fn output(what: &str, cmd: &mut Command) -> Result<Output, LabError> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|error| LabError::Spawn {
            what: what.to_owned(),
            error,
        })
}

/// Starts `cmd` inside the namespace at `netns_path` (the child starts on a thread that
/// entered it, and so begins life there).
pub(crate) fn spawn_in(netns_path: &Path, what: &str, mut cmd: Command) -> Result<Child, LabError> {
    cmd.process_group(0);
    netns::run_in(netns_path, move || cmd.spawn())?.map_err(|error| LabError::Spawn {
        what: what.to_owned(),
        error,
    })
}

/// Starts a process that prints `ready` on its standard output once it serves, and waits
/// for that line. Its standard error goes to `log`.
pub(crate) fn spawn_until_ready(
    netns_path: &Path,
    what: &str,
    mut cmd: Command,
    log: &Path,
    timeout: Duration,
) -> Result<u32, LabError> {
    let log_file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(LabError::io("open", log))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    let mut child = spawn_in(netns_path, what, cmd)?;
    let pid = child.id();
    let Some(stdout) = child.stdout.take() else {
        stop_pid(pid);
        return Err(LabError::NotReady {
            what: what.to_owned(),
            reason: "no standard output to read".to_owned(),
        });
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(timeout) {
        Ok(line) if line.trim() == "ready" => Ok(pid),
        other => {
            stop_pid(pid);
            let _ = child.wait();
            let seen = match other {
                Ok(line) if line.is_empty() => "it exited".to_owned(),
                Ok(line) => format!("it said {:?}", line.trim()),
                Err(_) => format!("no word after {timeout:?}"),
            };
            Err(LabError::NotReady {
                what: what.to_owned(),
                reason: format!("{seen}; its log: {}", log.display()),
            })
        }
    }
}

/// Whether `pid` runs (not a zombie) inside the namespace `ns`.
pub(crate) fn alive_in(pid: u32, ns: Option<NsId>) -> bool {
    running(pid) && ns.is_some() && ns_id(Path::new(&format!("/proc/{pid}/ns/net"))) == ns
}

/// Every process whose network namespace is one of `namespaces`.
pub(crate) fn processes_in(namespaces: &HashSet<NsId>) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            ns_id(&Path::new("/proc").join(pid.to_string()).join("ns/net"))
                .is_some_and(|id| namespaces.contains(&id))
        })
        .collect()
}

/// Asks processes to stop (SIGTERM), then kills what is left after a grace period.
pub(crate) fn stop_all(pids: &[u32]) {
    let me = std::process::id();
    let pids: Vec<u32> = pids.iter().copied().filter(|p| *p != me).collect();
    for pid in &pids {
        signal(*pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|p| running(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in pids.iter().filter(|p| running(**p)) {
        signal(*pid, Signal::SIGKILL);
    }
}

/// Kills one process at once (SIGKILL) and waits until it is gone.
pub(crate) fn kill_now(pid: u32) {
    signal(pid, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(3);
    while running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stops one process.
pub(crate) fn stop_pid(pid: u32) {
    stop_all(&[pid]);
}

/// Whether `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The state follows the command name, which is in parentheses.
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), sig);
    }
}
