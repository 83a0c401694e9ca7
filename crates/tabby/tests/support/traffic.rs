//! Real traffic and the agent's HTTP answers, for the agent's root tests: a TCP listener in a
//! workload namespace, a probe from another, and GETs to the agent's health address.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tabby_dataplane::NetNs;

pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// A TCP listener in a namespace that answers "ok", stopped on drop.
pub(crate) struct Listener(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Listener {
    pub(crate) fn start(ns: &NetNs, port: u16) -> Self {
        let l = ns
            .run(|| TcpListener::bind(("0.0.0.0", port)).expect("bind"))
            .expect("enter namespace");
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.write_all(b"ok");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self(stop, Some(t))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

/// Whether a TCP connection from `from` to `to:port` gets the listener's "ok".
pub(crate) fn tcp_probe(from: &NetNs, to: Ipv4Addr, port: u16) -> bool {
    from.run(|| {
        let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from((to, port)), PROBE_TIMEOUT)
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).is_ok() && &buf == b"ok"
    })
    .expect("enter source namespace")
}

/// GET `path` from the agent's health address `addr` inside `host`: (status, body).
pub(crate) fn http_get(host: &NetNs, addr: &str, path: &str) -> Option<(u16, String)> {
    host.run(|| {
        let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, PROBE_TIMEOUT).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    })
    .expect("enter host namespace")
}
