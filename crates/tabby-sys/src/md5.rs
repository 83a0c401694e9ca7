//! TCP MD5 signatures (RFC 2385): the kernel signs and checks every segment to or from one
//! peer address with a shared key. A listening socket needs a key per peer (accepted sockets
//! inherit them); an outgoing socket needs the key before `connect`, so that the SYN is signed.

use std::io;
use std::mem::{size_of, size_of_val};
use std::net::IpAddr;
use std::os::fd::{AsRawFd as _, BorrowedFd};

/// The longest key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub const TCP_MD5SIG_MAXKEYLEN: usize = 80;

/// `struct tcp_md5sig` of `<linux/tcp.h>` (libc does not define it). The bytes between
/// `flags` and `keylen` are the pad fields of the original `TCP_MD5SIG` layout, which must be 0.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; TCP_MD5SIG_MAXKEYLEN],
}

/// Sets (`Some`, non-empty) or removes (`None` or empty) the TCP MD5 key that `fd`, a TCP
/// socket, uses with `peer`. Removing a key that is not set succeeds.
///
/// An IPv4 peer on an IPv6 socket (a dual-stack listener) is given as its v4-mapped address,
/// which the kernel files as an IPv4 key; an IPv6 peer on an IPv4 socket is refused.
///
/// # Errors
/// `InvalidInput` for a key longer than [`TCP_MD5SIG_MAXKEYLEN`] or an address family the
/// socket cannot reach; otherwise the kernel's error (for instance `ENOPROTOOPT` on a
/// kernel built without `CONFIG_TCP_MD5SIG`, `ENOTSOCK` or `EOPNOTSUPP` for other sockets).
pub fn set_tcp_md5sig(fd: BorrowedFd<'_>, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    let key = key.unwrap_or_default();
    if key.len() > TCP_MD5SIG_MAXKEYLEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "TCP MD5 key for {peer} is {} bytes; the kernel takes at most {TCP_MD5SIG_MAXKEYLEN}",
                key.len()
            ),
        ));
    }
    let domain = socket_domain(fd)?;
    let mut sig = TcpMd5Sig {
        // SAFETY: sockaddr_storage is plain old data (integers and byte arrays) for which all
        // zero bytes are a valid value (family AF_UNSPEC).
        addr: unsafe { std::mem::zeroed() },
        flags: 0,
        prefixlen: 0,
        // Fits: checked against TCP_MD5SIG_MAXKEYLEN above.
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; TCP_MD5SIG_MAXKEYLEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    write_addr(&mut sig.addr, domain, peer)?;
    let len = libc::socklen_t::try_from(size_of::<TcpMd5Sig>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `fd` is a live descriptor for the duration of the borrow; the option value
    // points at an initialised `TcpMd5Sig` of `len` bytes, laid out as the kernel's
    // `struct tcp_md5sig` (repr(C), same field types and order), which the kernel only reads.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&raw const sig).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // Deleting a key the socket does not have: already in the wanted state.
    if key.is_empty() && err.raw_os_error() == Some(libc::ENOENT) {
        return Ok(());
    }
    Err(err)
}

/// The socket's address family (`SO_DOMAIN`).
fn socket_domain(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    let mut domain: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(size_of_val(&domain))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `fd` is live for the borrow; the kernel writes at most `len` bytes (the size of
    // a c_int) into `domain` and updates `len`, both valid, exclusive locals.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&raw mut domain).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(domain)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes `peer` into `storage` in the socket's family.
fn write_addr(
    storage: &mut libc::sockaddr_storage,
    domain: libc::c_int,
    peer: IpAddr,
) -> io::Result<()> {
    match (domain, peer) {
        (libc::AF_INET, IpAddr::V4(v4)) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(v4).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and at least as aligned as sockaddr_in
            // (that is its purpose), and `storage` is an exclusive reference.
            unsafe { std::ptr::write((&raw mut *storage).cast::<libc::sockaddr_in>(), sin) };
            Ok(())
        }
        (libc::AF_INET6, _) => {
            let v6 = match peer {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and at least as aligned as sockaddr_in6
            // (that is its purpose), and `storage` is an exclusive reference.
            unsafe { std::ptr::write((&raw mut *storage).cast::<libc::sockaddr_in6>(), sin6) };
            Ok(())
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot set a TCP MD5 key for {peer} on a socket of address family {domain}"),
        )),
    }
}

#[cfg(test)]
mod tests;
