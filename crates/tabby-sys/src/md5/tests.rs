use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::*;

const LO4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime must build")
        .block_on(f)
}

#[test]
fn a_key_is_set_then_removed_and_removing_again_succeeds() {
    let listener = std::net::TcpListener::bind((LO4, 0)).expect("bind loopback");
    let fd = listener.as_fd();
    set_tcp_md5sig(fd, LO4, Some(b"secret")).expect("set a key");
    set_tcp_md5sig(fd, LO4, Some(b"other")).expect("replace the key");
    set_tcp_md5sig(fd, LO4, None).expect("remove the key");
    set_tcp_md5sig(fd, LO4, Some(b"")).expect("an empty key removes too, also when none is set");
}

#[test]
fn a_key_longer_than_80_bytes_is_refused_with_a_clear_error() {
    let listener = std::net::TcpListener::bind((LO4, 0)).expect("bind loopback");
    set_tcp_md5sig(listener.as_fd(), LO4, Some(&[b'k'; 80])).expect("80 bytes is the maximum");
    let err = set_tcp_md5sig(listener.as_fd(), LO4, Some(&[b'k'; 81])).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "TCP MD5 key for 127.0.0.1 is 81 bytes; the kernel takes at most 80"
    );
}

#[test]
fn an_ipv4_peer_goes_on_a_dual_stack_socket_and_an_ipv6_peer_not_on_an_ipv4_one() {
    let v6 = std::net::TcpListener::bind((LO6, 0)).expect("bind ::1");
    set_tcp_md5sig(v6.as_fd(), LO4, Some(b"k")).expect("v4-mapped key on an IPv6 socket");
    set_tcp_md5sig(v6.as_fd(), LO6, Some(b"k")).expect("IPv6 key on an IPv6 socket");
    let v4 = std::net::TcpListener::bind((LO4, 0)).expect("bind loopback");
    let err = set_tcp_md5sig(v4.as_fd(), LO6, Some(b"k")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("::1"), "{err}");
}

#[test]
fn a_udp_socket_is_refused_by_the_kernel() {
    let udp = std::net::UdpSocket::bind((LO4, 0)).expect("bind udp");
    assert!(set_tcp_md5sig(udp.as_fd(), LO4, Some(b"k")).is_err());
}

/// Connects to `to` with `key` (if any) set before the SYN, within `wait`.
async fn connect(to: SocketAddr, key: Option<&[u8]>, wait: Duration) -> io::Result<TcpStream> {
    let socket = match to {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if key.is_some() {
        set_tcp_md5sig(socket.as_fd(), to.ip(), key)?;
    }
    tokio::time::timeout(wait, socket.connect(to))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// A listener on `ip` whose key for `ip` itself (the client connects from the same address)
/// is `key`: the same key connects and carries data; another key or none never completes the
/// handshake, because the kernel drops unsigned or badly signed segments without answering.
fn only_the_same_key_connects(ip: IpAddr) {
    block_on(async move {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("listener address");
        set_tcp_md5sig(listener.as_fd(), ip, Some(b"right key")).expect("listener key");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener
                .accept()
                .await
                .expect("accept the signed connection");
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf).await.expect("read");
            conn.write_all(&buf).await.expect("echo");
            listener
        });
        let mut conn = connect(addr, Some(b"right key"), Duration::from_secs(5))
            .await
            .expect("the same key must connect");
        conn.write_all(b"hello").await.expect("write");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).await.expect("read the echo");
        assert_eq!(&buf, b"hello");
        let listener = server.await.expect("server task");

        for key in [Some(&b"wrong key"[..]), None] {
            let err = connect(addr, key, Duration::from_secs(2))
                .await
                .expect_err("a different key or none must not connect");
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "key {key:?}: {err}");
        }

        // With the key removed from the listener, an unsigned client connects again.
        set_tcp_md5sig(listener.as_fd(), ip, None).expect("remove the listener key");
        let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        connect(addr, None, Duration::from_secs(5))
            .await
            .expect("no keys on either side connects");
        accept.await.expect("accept task").expect("accept");
    });
}

#[test]
fn over_ipv4_only_the_same_key_connects() {
    only_the_same_key_connects(LO4);
}

#[test]
fn over_ipv6_only_the_same_key_connects() {
    only_the_same_key_connects(LO6);
}
