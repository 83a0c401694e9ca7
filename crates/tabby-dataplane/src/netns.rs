//! Network namespaces: create and delete named ones (as `ip netns add/del` do, under
//! `/run/netns`), and run code inside one.
//!
//! A namespace belongs to a thread, not a process, so "inside" means on a helper thread that
//! entered it: sockets it creates (netlink or TCP) stay in that namespace after the thread
//! ends, and a child process it spawns starts there too. The caller's own thread never moves.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// Where named namespaces live (the same folder as iproute2's).
pub const NETNS_DIR: &str = "/run/netns";

/// A namespace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Opening, creating or removing a file of the namespace.
    #[error("network namespace {path}: {step}: {error}")]
    Io {
        /// The namespace's file.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// Why it failed.
        #[source]
        error: std::io::Error,
    },
    /// A system call (unshare, setns, mount) failed.
    #[error("network namespace {path}: {step}: {errno}")]
    Sys {
        /// The namespace's file.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The error number.
        #[source]
        errno: nix::Error,
    },
    /// The helper thread panicked.
    #[error("network namespace {path}: the helper thread panicked")]
    Panicked {
        /// The namespace's file.
        path: PathBuf,
    },
}

/// Runs `f` on a new thread that entered the namespace at `path` (a `/run/netns/NAME` file or
/// `/proc/PID/ns/net`).
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let file = File::open(path).map_err(|error| NetnsError::Io {
        path: path.to_owned(),
        step: "open",
        error,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| {
                NetnsError::Sys {
                    path: path.to_owned(),
                    step: "setns",
                    errno,
                }
            })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::Panicked {
                path: path.to_owned(),
            })
        })
    })
}

/// Creates the named namespace `/run/netns/NAME`, like `ip netns add NAME`.
pub fn create(name: &str) -> Result<PathBuf, NetnsError> {
    let path = Path::new(NETNS_DIR).join(name);
    let io = |step| {
        let path = path.clone();
        move |error| NetnsError::Io { path, step, error }
    };
    fs::create_dir_all(NETNS_DIR).map_err(io("create the folder"))?;
    File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io("create the mount point"))?;
    let made = std::thread::scope(|s| {
        s.spawn(|| {
            let sys = |step| {
                let path = path.clone();
                move |errno| NetnsError::Sys { path, step, errno }
            };
            // Only this helper thread moves into the new namespace; the bind mount keeps the
            // namespace alive after the thread ends.
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare"))?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys("bind mount"))
        })
        .join()
        .unwrap_or_else(|_| Err(NetnsError::Panicked { path: path.clone() }))
    });
    if let Err(err) = made {
        let _ = fs::remove_file(&path);
        return Err(err);
    }
    tracing::debug!(netns = %name, "created network namespace");
    Ok(path)
}

/// Deletes the named namespace, like `ip netns del NAME`. The namespace itself ends when the
/// last process and socket in it are gone.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    let path = Path::new(NETNS_DIR).join(name);
    nix::mount::umount2(&path, MntFlags::MNT_DETACH).map_err(|errno| NetnsError::Sys {
        path: path.clone(),
        step: "unmount",
        errno,
    })?;
    fs::remove_file(&path).map_err(|error| NetnsError::Io {
        path: path.clone(),
        step: "remove",
        error,
    })?;
    tracing::debug!(netns = %name, "deleted network namespace");
    Ok(())
}

/// A named namespace that is deleted when dropped (also when a test panics). Names are made
/// unique per process and call: `<prefix>-<pid>-<n>`.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    path: PathBuf,
}

impl NetNs {
    /// Creates `<prefix>-<pid>-<n>`.
    pub fn new(prefix: &str) -> Result<Self, NetnsError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        // A leftover of a crashed run with a recycled pid would make creation fail.
        if Path::new(NETNS_DIR).join(&name).exists() {
            let _ = delete(&name);
        }
        let path = create(&name)?;
        Ok(Self { name, path })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its file under `/run/netns`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside it (see [`run_in`]).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        run_in(&self.path, f)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(err) = delete(&self.name) {
            tracing::warn!(netns = %self.name, error = %err, "could not delete network namespace");
        }
    }
}

/// Writes a sysctl of the namespace at `path` (`key` as in `net/ipv4/ip_forward`): files under
/// `/proc/sys/net` show the namespace of the thread that opens them.
pub fn write_sysctl(path: &Path, key: &str, value: &str) -> Result<(), NetnsError> {
    let file = Path::new("/proc/sys").join(key);
    run_in(path, || fs::write(&file, value))?.map_err(|error| NetnsError::Io {
        path: file.clone(),
        step: "write sysctl",
        error,
    })
}
