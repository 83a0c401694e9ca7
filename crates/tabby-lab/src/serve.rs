//! The small server every lab workload runs (as `tabby lab serve`, inside the workload's
//! namespace): on each declared TCP port it greets a connection with the workload's name and
//! then echoes what it receives (so a test can keep a connection alive and use it); on each
//! UDP port it answers a datagram with the name. Probes check the name, so an answer from the
//! wrong workload is noticed.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};

use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::probe::ProbeProtocol;

/// A port a workload serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServePort {
    /// TCP or UDP.
    pub protocol: ProbeProtocol,
    /// The port.
    pub port: u16,
}

impl fmt::Display for ServePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol, self.port)
    }
}

/// Binds every port (IPv4 and IPv6), calls `ready`, then serves until the process is killed.
pub fn serve(name: &str, ports: &[ServePort], ready: impl FnOnce()) -> Result<(), LabError> {
    let reply = format!("{name}\n");
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for p in ports {
        // A dual-stack socket on `::` takes IPv4 too (the kernel's default bindv6only is 0).
        let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, p.port));
        let bound = match p.protocol {
            ProbeProtocol::Tcp => TcpListener::bind(addr).map(|l| tcp.push(l)),
            ProbeProtocol::Udp => UdpSocket::bind(addr).map(|s| udp.push(s)),
        };
        bound.map_err(|error| LabError::Io {
            step: "listen on",
            path: format!("{p}").into(),
            error,
        })?;
    }
    ready();
    std::thread::scope(|s| {
        for l in &tcp {
            let reply = &reply;
            s.spawn(move || {
                // A probe that gave up early is not this server's problem.
                for c in l.incoming().flatten() {
                    let greeting = reply.clone();
                    std::thread::spawn(move || greet_and_echo(c, &greeting));
                }
            });
        }
        for sock in &udp {
            let reply = reply.as_bytes();
            s.spawn(move || {
                let mut buf = [0u8; 512];
                loop {
                    if let Ok((_, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(reply, from);
                    }
                }
            });
        }
    });
    Ok(())
}

fn greet_and_echo(mut c: TcpStream, greeting: &str) {
    if c.write_all(greeting.as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
