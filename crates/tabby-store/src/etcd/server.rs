//! Running etcd itself: one member or a cluster, each member a child process with its own
//! data directory, for tests, benchmarks and `tabby lab`.
//!
//! The lab runs members inside a network namespace, so the command that starts `etcd` is the
//! caller's to build ([`ClusterSpec::with_command`], for example `ip netns exec NS etcd`);
//! members are reached at the addresses the spec names. Readiness and the leader are read
//! from each member's HTTP endpoints (`/health`, `/v3/maintenance/status`), which need no
//! client and work from any thread.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why an etcd member or cluster could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The member's process could not be started.
    #[error(
        "cannot start etcd member {name}: {message} (is etcd installed? On Debian: apt-get install etcd-server)"
    )]
    Spawn {
        /// The member.
        name: String,
        /// The operating system's reason.
        message: String,
    },
    /// The member exited while it should be serving.
    #[error("etcd member {name} exited ({status}); the end of its log:\n{log}")]
    Exited {
        /// The member.
        name: String,
        /// How it exited.
        status: String,
        /// The last lines of its log.
        log: String,
    },
    /// The members did not all become healthy in time.
    #[error("etcd did not become ready within {waited:?}: {detail}")]
    NotReady {
        /// How long it was given.
        waited: Duration,
        /// The members that were not healthy, and why.
        detail: String,
    },
    /// A file or directory of the cluster.
    #[error("{}: {message}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        message: String,
    },
    /// No free loopback ports were found.
    #[error("no free loopback ports for etcd: {0}")]
    Ports(String),
}

/// One member: its name and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Unique in the cluster; also the name of its data directory.
    pub name: String,
    /// The client (gRPC) address.
    pub client: SocketAddr,
    /// The peer (raft) address.
    pub peer: SocketAddr,
}

/// Builds the command that runs `etcd`; the member's arguments are appended to it.
pub type CommandFn = Arc<dyn Fn() -> Command + Send + Sync>;

/// What to run: the members, where their data lives and how to start them.
#[derive(Clone)]
pub struct ClusterSpec {
    /// Holds a data directory, a log and an output file per member.
    pub data_dir: PathBuf,
    /// The members.
    pub members: Vec<Member>,
    /// The cluster token, distinct per cluster so that members never join a stranger.
    pub token: String,
    /// Starts `etcd` (default: `etcd` from `PATH`).
    pub command: CommandFn,
    /// Arguments added to every member's command line.
    pub extra_args: Vec<String>,
    /// TLS on the members' client port (peers stay plain), or none.
    pub client_tls: Option<ServerTls>,
}

/// TLS for members' client port. Health is then read from a plain metrics port, and
/// [`EtcdCluster::leader`] (which reads the client port) finds no leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// The members' certificate (PEM), valid for their client addresses.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// When set, clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
    /// A plain-HTTP port per member (in member order) serving `/health`.
    pub health: Vec<SocketAddr>,
}

impl std::fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("data_dir", &self.data_dir)
            .field("members", &self.members)
            .field("token", &self.token)
            .field("extra_args", &self.extra_args)
            .field("client_tls", &self.client_tls)
            .finish_non_exhaustive()
    }
}

/// Member arguments beyond etcd's defaults: commits of up to 10,000 ops (etcd's default is
/// 128) and up to 32 MiB.
pub const DEFAULT_EXTRA_ARGS: &[&str] = &["--max-txn-ops=10000", "--max-request-bytes=33554432"];

impl ClusterSpec {
    /// Members named `e1`, `e2`, ... at the given client and peer addresses.
    pub fn new(data_dir: impl Into<PathBuf>, addresses: &[(SocketAddr, SocketAddr)]) -> Self {
        let data_dir = data_dir.into();
        let members = addresses
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| Member {
                name: format!("e{}", i + 1),
                client: *client,
                peer: *peer,
            })
            .collect();
        let token = format!(
            "tabby-{}-{}",
            std::process::id(),
            data_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        Self {
            data_dir,
            members,
            token,
            command: Arc::new(|| Command::new("etcd")),
            extra_args: DEFAULT_EXTRA_ARGS.iter().map(|s| (*s).to_owned()).collect(),
            client_tls: None,
        }
    }

    /// `size` members on free 127.0.0.1 ports.
    pub fn on_loopback(data_dir: impl Into<PathBuf>, size: usize) -> Result<Self, ServerError> {
        let ports = free_ports(size * 2)?;
        let addresses: Vec<(SocketAddr, SocketAddr)> = ports
            .chunks(2)
            .map(|p| {
                (
                    SocketAddr::from(([127, 0, 0, 1], p[0])),
                    SocketAddr::from(([127, 0, 0, 1], p[1])),
                )
            })
            .collect();
        Ok(Self::new(data_dir, &addresses))
    }

    /// Starts members with `command()` instead of `etcd` (for example inside a network
    /// namespace: `ip netns exec NS etcd`).
    #[must_use]
    pub fn with_command(mut self, command: impl Fn() -> Command + Send + Sync + 'static) -> Self {
        self.command = Arc::new(command);
        self
    }

    /// Serves clients over TLS with `cert` and `key`, requiring client certificates signed by
    /// `client_ca` when given; health is then read from free loopback ports.
    pub fn with_client_tls(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        client_ca: Option<PathBuf>,
    ) -> Result<Self, ServerError> {
        let health = free_ports(self.members.len())?
            .into_iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        self.client_tls = Some(ServerTls {
            cert: cert.into(),
            key: key.into(),
            client_ca,
            health,
        });
        Ok(self)
    }

    fn client_scheme(&self) -> &'static str {
        if self.client_tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Running members; every one still running is killed on drop.
pub struct EtcdCluster {
    spec: ClusterSpec,
    children: Vec<Option<Child>>,
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster")
            .field("members", &self.spec.members)
            .finish_non_exhaustive()
    }
}

/// How long a fresh cluster may take to elect a leader and serve.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl EtcdCluster {
    /// Starts a new cluster and waits until every member is healthy.
    pub fn start(spec: ClusterSpec) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&spec.data_dir).map_err(|e| ServerError::Io {
            path: spec.data_dir.clone(),
            message: e.to_string(),
        })?;
        let mut cluster = Self {
            children: spec.members.iter().map(|_| None).collect(),
            spec,
        };
        for i in 0..cluster.size() {
            cluster.spawn(i, "new")?;
        }
        cluster.wait_ready(START_TIMEOUT)?;
        Ok(cluster)
    }

    /// Starts `size` members on free loopback ports under `data_dir`, trying other ports if
    /// someone took the chosen ones meanwhile.
    pub fn start_on_loopback(data_dir: &Path, size: usize) -> Result<Self, ServerError> {
        let mut last = None;
        for attempt in 0..5 {
            let dir = data_dir.join(format!("cluster-{attempt}"));
            match Self::start(ClusterSpec::on_loopback(&dir, size)?) {
                Ok(cluster) => return Ok(cluster),
                Err(err @ ServerError::Exited { .. })
                    if err.to_string().contains("address already in use") =>
                {
                    let _ = std::fs::remove_dir_all(&dir);
                    last = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| ServerError::Ports("no attempt was made".to_owned())))
    }

    /// How many members the cluster has.
    pub fn size(&self) -> usize {
        self.spec.members.len()
    }

    /// The members.
    pub fn members(&self) -> &[Member] {
        &self.spec.members
    }

    /// The datastore URL naming every member, with `prefix` (`""` for the default).
    pub fn url(&self, prefix: &str) -> String {
        let hosts: Vec<String> = self
            .spec
            .members
            .iter()
            .map(|m| m.client.to_string())
            .collect();
        let scheme = if self.spec.client_tls.is_some() {
            "etcds"
        } else {
            "etcd"
        };
        format!("{scheme}://{}{prefix}", hosts.join(","))
    }

    /// The datastore URL naming member `i` alone.
    pub fn member_url(&self, i: usize, prefix: &str) -> String {
        let scheme = if self.spec.client_tls.is_some() {
            "etcds"
        } else {
            "etcd"
        };
        format!("{scheme}://{}{prefix}", self.spec.members[i].client)
    }

    /// Member `i`'s log file.
    pub fn log(&self, i: usize) -> PathBuf {
        self.spec
            .data_dir
            .join(format!("{}.log", self.spec.members[i].name))
    }

    /// Leaves the members running after this value is gone (a lab's members outlive the
    /// command that started them; `tabby lab down` stops them): their process ids.
    pub fn detach(mut self) -> Vec<u32> {
        self.children
            .iter_mut()
            .filter_map(|c| c.take().map(|child| child.id()))
            .collect()
    }

    /// Member `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    /// Kills member `i` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops member `i` gracefully (SIGTERM; a leader hands over leadership first), or kills
    /// it if it has not exited after five seconds (a member without quorum ignores SIGTERM).
    pub fn stop(&mut self, i: usize) {
        let Some(mut child) = self.children[i].take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts member `i` again with its data (it rejoins the cluster); does not wait.
    pub fn restart(&mut self, i: usize) -> Result<(), ServerError> {
        if self.children[i].is_none() {
            self.spawn(i, "existing")?;
        }
        Ok(())
    }

    /// Whether member `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// Waits until every running member reports itself healthy (it has a leader and serves).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), ServerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut problems = Vec::new();
            for i in 0..self.size() {
                let member = &self.spec.members[i];
                let Some(child) = self.children[i].as_mut() else {
                    continue;
                };
                if let Ok(Some(status)) = child.try_wait() {
                    self.children[i] = None;
                    return Err(ServerError::Exited {
                        name: member.name.clone(),
                        status: status.to_string(),
                        log: tail(&self.spec.data_dir.join(format!("{}.log", member.name))),
                    });
                }
                let health = match &self.spec.client_tls {
                    Some(tls) => tls.health[i],
                    None => member.client,
                };
                match http(health, "GET", "/health", "") {
                    Ok(body) if body.contains("\"health\":\"true\"") => {}
                    Ok(body) => problems.push(format!("{}: {}", member.name, body.trim())),
                    Err(e) => problems.push(format!("{}: {e}", member.name)),
                }
            }
            if problems.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ServerError::NotReady {
                    waited: timeout,
                    detail: problems.join("; "),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of the member that is the leader now, as a running member reports it.
    pub fn leader(&self) -> Option<usize> {
        for (i, member) in self.spec.members.iter().enumerate() {
            if self.children[i].is_none() {
                continue;
            }
            if self.spec.client_tls.is_some() {
                return None;
            }
            let Ok(body) = http(member.client, "POST", "/v3/maintenance/status", "{}") else {
                continue;
            };
            let (Some(me), Some(leader)) = (
                json_string(&body, "member_id"),
                json_string(&body, "leader"),
            ) else {
                continue;
            };
            if leader == "0" {
                continue;
            }
            if me == leader {
                return Some(i);
            }
            // Ask the others; this one knows the leader's id, not its index.
            for (j, other) in self.spec.members.iter().enumerate() {
                if j == i || self.children[j].is_none() {
                    continue;
                }
                if let Ok(b) = http(other.client, "POST", "/v3/maintenance/status", "{}")
                    && json_string(&b, "member_id").as_deref() == Some(leader.as_str())
                {
                    return Some(j);
                }
            }
        }
        None
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<(), ServerError> {
        let spec = &self.spec;
        let member = &spec.members[i];
        let out_path = spec.data_dir.join(format!("{}.out", member.name));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .map_err(|e| ServerError::Io {
                path: out_path.clone(),
                message: e.to_string(),
            })?;
        let err = out.try_clone().map_err(|e| ServerError::Io {
            path: out_path,
            message: e.to_string(),
        })?;
        let mut command = (spec.command)();
        command
            .arg(format!("--name={}", member.name))
            .arg(format!(
                "--data-dir={}",
                spec.data_dir.join(&member.name).display()
            ))
            .arg(format!(
                "--listen-client-urls={}://{}",
                spec.client_scheme(),
                member.client
            ))
            .arg(format!(
                "--advertise-client-urls={}://{}",
                spec.client_scheme(),
                member.client
            ))
            .arg(format!("--listen-peer-urls=http://{}", member.peer))
            .arg(format!(
                "--initial-advertise-peer-urls=http://{}",
                member.peer
            ))
            .arg(format!("--initial-cluster={}", spec.initial_cluster()))
            .arg(format!("--initial-cluster-token={}", spec.token))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--logger=zap")
            .arg(format!(
                "--log-outputs={}",
                spec.data_dir.join(format!("{}.log", member.name)).display()
            ))
            .args(&spec.extra_args)
            .args(spec.client_tls.iter().flat_map(|tls| tls.args(i)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command.spawn().map_err(|e| ServerError::Spawn {
            name: member.name.clone(),
            message: e.to_string(),
        })?;
        self.children[i] = Some(child);
        Ok(())
    }
}

impl ServerTls {
    fn args(&self, member: usize) -> Vec<String> {
        let mut args = vec![
            format!("--cert-file={}", self.cert.display()),
            format!("--key-file={}", self.key.display()),
            format!("--listen-metrics-urls=http://{}", self.health[member]),
        ];
        if let Some(ca) = &self.client_ca {
            args.push("--client-cert-auth".to_owned());
            args.push(format!("--trusted-ca-file={}", ca.display()));
        }
        args
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.size() {
            self.kill(i);
        }
    }
}

/// The last lines of a log, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// `"name":"value"` in a JSON text (etcd's gateway writes 64-bit numbers as strings).
fn json_string(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let len = body[start..].find('"')?;
    Some(body[start..start + len].to_owned())
}

/// One HTTP/1.0 request (so the answer is never chunked); the body of a 2xx answer.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    if !head.starts_with("HTTP/1.")
        || head
            .split_whitespace()
            .nth(1)
            .is_none_or(|c| !c.starts_with('2'))
    {
        return Err(std::io::Error::other(
            head.lines().next().unwrap_or("no answer").to_owned(),
        ));
    }
    Ok(body.to_owned())
}

/// `n` distinct ports that are free on 127.0.0.1 now, below the kernel's ephemeral range so
/// that outgoing connections do not take them before etcd binds them.
fn free_ports(n: usize) -> Result<Vec<u16>, ServerError> {
    const LOW: u32 = 20000;
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each process starts at its own place, so parallel test binaries rarely meet.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let mut ports = Vec::with_capacity(n);
    let mut tried = 0;
    while ports.len() < n {
        if tried > SPAN {
            return Err(ServerError::Ports(format!(
                "tried every port from {LOW} to {}",
                LOW + SPAN
            )));
        }
        tried += 1;
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = u16::try_from(LOW + offset).expect("below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    Ok(ports)
}
