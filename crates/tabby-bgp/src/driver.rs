//! The tokio driver: owns the sockets and the clock, feeds the [`Speaker`] and carries out its
//! actions. Everything protocol-related happens in the speaker; this module only moves bytes.
//!
//! One task runs the speaker; it waits on a single channel into which the listener, the
//! connection readers, connection attempts and the [`Handle`] all post, with a timeout at the
//! speaker's next timer. Each connection has a reader task and a writer task.
//!
//! TCP MD5 (RFC 2385): the kernel checks signatures per peer address, so a neighbour's key goes
//! on every listening socket (accepted connections inherit it) and on each outgoing socket
//! before it connects. Keys leave the listeners when the neighbour goes or drops its password.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd as _;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::{
    Action, ConnId, DriverError, LearnedRoute, Md5Key, PeerConfig, PeerStatus, RouteChange, Speaker,
};

/// Driver settings.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Addresses to accept BGP connections on (default `[::]:179`, which also takes IPv4 on
    /// Linux). Empty: never accept, only connect.
    pub listen: Vec<SocketAddr>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 179)],
        }
    }
}

enum Command {
    AddPeer(PeerConfig),
    RemovePeer(IpAddr),
    ResetPeer(IpAddr),
    Originate(IpNet, Vec<u32>),
    Withdraw(IpNet),
    Status(oneshot::Sender<Vec<PeerStatus>>),
    Learned(oneshot::Sender<Vec<LearnedRoute>>),
    Shutdown,
}

enum Event {
    Command(Command),
    Accepted(TcpStream, SocketAddr),
    Connected(ConnId, TcpStream),
    ConnectFailed(ConnId),
    Data(ConnId, Vec<u8>),
    Closed(ConnId),
}

enum Write {
    Data(Vec<u8>),
    Close,
}

/// Controls a running speaker. Dropping every handle stops it.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Event>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Event")
    }
}

impl Handle {
    fn send(&self, c: Command) -> Result<(), DriverError> {
        self.tx
            .send(Event::Command(c))
            .map_err(|_| DriverError::Stopped)
    }

    /// Adds (or replaces) a neighbour.
    pub fn add_peer(&self, cfg: PeerConfig) -> Result<(), DriverError> {
        self.send(Command::AddPeer(cfg))
    }

    /// Removes a neighbour.
    pub fn remove_peer(&self, addr: IpAddr) -> Result<(), DriverError> {
        self.send(Command::RemovePeer(addr))
    }

    /// Restarts a neighbour held down.
    pub fn reset_peer(&self, addr: IpAddr) -> Result<(), DriverError> {
        self.send(Command::ResetPeer(addr))
    }

    /// Originates a prefix.
    pub fn originate(&self, prefix: IpNet, communities: Vec<u32>) -> Result<(), DriverError> {
        self.send(Command::Originate(prefix, communities))
    }

    /// Stops originating a prefix.
    pub fn withdraw(&self, prefix: IpNet) -> Result<(), DriverError> {
        self.send(Command::Withdraw(prefix))
    }

    /// Every neighbour's status.
    pub async fn status(&self) -> Result<Vec<PeerStatus>, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Status(tx))?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// Every best learned route.
    pub async fn learned_routes(&self) -> Result<Vec<LearnedRoute>, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Learned(tx))?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// Ends every session (Cease) and stops the speaker.
    pub fn shutdown(&self) -> Result<(), DriverError> {
        self.send(Command::Shutdown)
    }
}

/// Starts the speaker on the current tokio runtime. Returns its handle, the stream of learned
/// route changes for the agent to program, and the task (which ends after a shutdown).
pub async fn start(
    speaker: Speaker,
    cfg: DriverConfig,
) -> Result<(Handle, mpsc::UnboundedReceiver<RouteChange>, JoinHandle<()>), DriverError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (routes_tx, routes_rx) = mpsc::unbounded_channel();
    let mut listeners = Vec::new();
    let mut listen_sockets = Vec::new();
    for addr in &cfg.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| DriverError::Listen {
                addr: addr.ip(),
                port: addr.port(),
                err,
            })?;
        let listener = Arc::new(listener);
        listen_sockets.push(Arc::clone(&listener));
        let weak = tx.downgrade();
        listeners.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, remote)) => {
                        let Some(tx) = weak.upgrade() else { break };
                        let _ = tx.send(Event::Accepted(stream, remote));
                    }
                    Err(err) => warn!(%err, "accept failed"),
                }
            }
        }));
    }
    let run = Run {
        speaker,
        rx,
        weak: tx.downgrade(),
        conns: HashMap::new(),
        routes: routes_tx,
        listeners,
        listen_sockets,
        keys: HashMap::new(),
        connecting: HashMap::new(),
    };
    let task = tokio::spawn(run.run());
    Ok((Handle { tx }, routes_rx, task))
}

struct Run {
    speaker: Speaker,
    rx: mpsc::UnboundedReceiver<Event>,
    weak: mpsc::WeakUnboundedSender<Event>,
    conns: HashMap<ConnId, mpsc::UnboundedSender<Write>>,
    routes: mpsc::UnboundedSender<RouteChange>,
    listeners: Vec<JoinHandle<()>>,
    /// The listening sockets, to set and remove TCP MD5 keys on.
    listen_sockets: Vec<Arc<TcpListener>>,
    /// The TCP MD5 key of each neighbour that has one (as set on the listeners).
    keys: HashMap<IpAddr, Md5Key>,
    /// Outgoing connection attempts in progress, aborted when the speaker gives up on them
    /// (a peer that never answers, as with a TCP MD5 mismatch, would leave them for minutes).
    connecting: HashMap<ConnId, JoinHandle<()>>,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Run {
    async fn run(mut self) {
        loop {
            self.perform();
            let event = match self.speaker.next_timeout() {
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    match tokio::time::timeout_at(at, self.rx.recv()).await {
                        Ok(event) => event,
                        Err(_) => {
                            self.speaker.timeout(now());
                            continue;
                        }
                    }
                }
                None => self.rx.recv().await,
            };
            let Some(event) = event else { break };
            let event = match event {
                Event::Command(Command::Originate(p, c)) => self.origin_batch(p, Some(c)),
                Event::Command(Command::Withdraw(p)) => self.origin_batch(p, None),
                other => Some(other),
            };
            let Some(event) = event else { continue };
            if !self.handle(event) {
                break;
            }
        }
        // Flush the Cease messages of a shutdown before the writers are dropped.
        self.perform();
        for l in &self.listeners {
            l.abort();
        }
    }

    /// Applies one origin change and every other one already queued behind it at once (the
    /// agent hands its blocks over one by one), so neighbours get full UPDATEs rather than one
    /// per prefix. Returns the first other event met, to be handled next.
    fn origin_batch(&mut self, prefix: IpNet, communities: Option<Vec<u32>>) -> Option<Event> {
        let mut batch = vec![(prefix, communities)];
        let next = loop {
            match self.rx.try_recv() {
                Ok(Event::Command(Command::Originate(p, c))) => batch.push((p, Some(c))),
                Ok(Event::Command(Command::Withdraw(p))) => batch.push((p, None)),
                Ok(other) => break Some(other),
                Err(_) => break None,
            }
        };
        self.speaker.set_origin(batch);
        next
    }

    /// Returns false to stop.
    fn handle(&mut self, event: Event) -> bool {
        let now = now();
        match event {
            Event::Command(c) => match c {
                Command::AddPeer(cfg) => {
                    self.set_key(cfg.addr, cfg.md5_key.clone());
                    self.speaker.add_peer(now, cfg);
                }
                Command::RemovePeer(a) => {
                    self.speaker.remove_peer(now, a);
                    self.set_key(a, None);
                }
                Command::ResetPeer(a) => self.speaker.reset_peer(now, a),
                Command::Originate(p, c) => self.speaker.originate(p, c),
                Command::Withdraw(p) => self.speaker.withdraw(p),
                Command::Status(tx) => {
                    let _ = tx.send(self.speaker.peer_status());
                }
                Command::Learned(tx) => {
                    let _ = tx.send(self.speaker.learned_routes());
                }
                Command::Shutdown => {
                    for status in self.speaker.peer_status() {
                        self.speaker.remove_peer(now, status.addr);
                        self.set_key(status.addr, None);
                    }
                    return false;
                }
            },
            Event::Accepted(stream, remote) => {
                let local = stream.local_addr().map(|a| a.ip().to_canonical());
                let remote = remote.ip().to_canonical();
                match local {
                    Ok(local) => match self.speaker.accept(now, remote, local) {
                        Some(conn) => self.attach(conn, stream),
                        None => debug!(%remote, "connection refused"),
                    },
                    Err(err) => warn!(%err, "accepted socket has no local address"),
                }
            }
            Event::Connected(conn, stream) => match stream.local_addr() {
                _ if self.connecting.remove(&conn).is_none() => {
                    debug!(?conn, "connection completed after it was given up");
                }
                Ok(local) => {
                    self.attach(conn, stream);
                    self.speaker.connected(now, conn, local.ip().to_canonical());
                }
                Err(_) => self.speaker.connect_failed(now, conn),
            },
            Event::ConnectFailed(conn) => {
                if self.connecting.remove(&conn).is_some() {
                    self.speaker.connect_failed(now, conn);
                }
            }
            Event::Data(conn, data) => self.speaker.received(now, conn, &data),
            Event::Closed(conn) => {
                self.conns.remove(&conn);
                self.speaker.closed(now, conn);
            }
        }
        true
    }

    /// Carries out every queued action.
    fn perform(&mut self) {
        while let Some(action) = self.speaker.poll_action() {
            match action {
                Action::Connect {
                    conn,
                    remote,
                    local,
                } => {
                    let weak = self.weak.clone();
                    let key = self.keys.get(&remote.ip()).cloned();
                    let task = tokio::spawn(async move {
                        let event = match connect(remote, local, key).await {
                            Ok(stream) => Event::Connected(conn, stream),
                            Err(err) => {
                                debug!(%remote, %err, "connect failed");
                                Event::ConnectFailed(conn)
                            }
                        };
                        if let Some(tx) = weak.upgrade() {
                            let _ = tx.send(event);
                        }
                    });
                    self.connecting.insert(conn, task);
                }
                Action::Send { conn, data } => {
                    if let Some(w) = self.conns.get(&conn) {
                        let _ = w.send(Write::Data(data));
                    }
                }
                Action::Close { conn } => {
                    if let Some(w) = self.conns.remove(&conn) {
                        let _ = w.send(Write::Close);
                    }
                    if let Some(task) = self.connecting.remove(&conn) {
                        task.abort();
                    }
                }
                Action::Route(change) => {
                    let _ = self.routes.send(change);
                }
            }
        }
    }

    /// Sets (or with `None` removes) a neighbour's TCP MD5 key on every listening socket.
    fn set_key(&mut self, peer: IpAddr, key: Option<Md5Key>) {
        if self.keys.get(&peer) == key.as_ref() {
            return;
        }
        let bytes = key.as_ref().map(Md5Key::as_bytes);
        for listener in &self.listen_sockets {
            if let Err(err) = tabby_sys::set_tcp_md5sig(listener.as_fd(), peer, bytes) {
                // An IPv6 neighbour cannot reach an IPv4-only listener anyway.
                let family = err.kind() == std::io::ErrorKind::InvalidInput;
                if !family {
                    warn!(%peer, %err, "cannot set the TCP MD5 key on a listening socket");
                }
            }
        }
        match key {
            Some(key) => self.keys.insert(peer, key),
            None => self.keys.remove(&peer),
        };
    }

    /// Starts the reader and writer of a connection.
    fn attach(&mut self, conn: ConnId, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (mut read, mut write) = stream.into_split();
        let weak = self.weak.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let event = match read.read(&mut buf).await {
                    Ok(0) | Err(_) => Event::Closed(conn),
                    Ok(n) => Event::Data(conn, buf[..n].to_vec()),
                };
                let closed = matches!(event, Event::Closed(_));
                let Some(tx) = weak.upgrade() else { break };
                if tx.send(event).is_err() || closed {
                    break;
                }
            }
        });
        let (wtx, mut wrx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(w) = wrx.recv().await {
                match w {
                    Write::Data(data) => {
                        if write.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    Write::Close => break,
                }
            }
            let _ = write.shutdown().await;
            // The speaker is done with this connection: stop reading it too.
            reader.abort();
        });
        self.conns.insert(conn, wtx);
    }
}

async fn connect(
    remote: SocketAddr,
    local: Option<IpAddr>,
    key: Option<Md5Key>,
) -> std::io::Result<TcpStream> {
    let socket = match remote {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(key) = key {
        // Before connect, so that the SYN is signed.
        tabby_sys::set_tcp_md5sig(socket.as_fd(), remote.ip(), Some(key.as_bytes()))?;
    }
    if let Some(local) = local {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    socket.connect(remote).await
}
