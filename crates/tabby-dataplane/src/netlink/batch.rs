//! Route writes in batches on a plain `NETLINK_ROUTE` socket: many requests per send, every
//! acknowledgement read back and matched to its request by sequence number. The rtnetlink
//! crate's handle awaits each request's answer before the next, which made 100,000 learned
//! routes cost one round trip each.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use rtnetlink::packet_core::{
    ErrorMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::RouteMessage;

/// Requests per send. Each acknowledgement takes about a kilobyte of the socket's receive
/// buffer until it is read; this many stay well inside the default buffer.
const CHUNK: usize = 128;
/// `NLMSG_ERROR`: an acknowledgement (code 0) or a refusal.
const NLMSG_ERROR: u16 = 2;
/// The kernel answers route requests within the send call; this only bounds a broken socket.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// One request of a batch.
pub(super) enum Request {
    /// `RTM_NEWROUTE` with create and replace.
    Replace(RouteMessage),
    /// `RTM_DELROUTE`.
    Delete(RouteMessage),
}

/// A kept `NETLINK_ROUTE` socket in the namespace it was opened in.
pub(super) struct RouteSocket {
    socket: Socket,
    seq: u32,
}

impl std::fmt::Debug for RouteSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSocket").finish_non_exhaustive()
    }
}

impl RouteSocket {
    /// Opens the socket in the caller's namespace.
    pub(super) fn open() -> std::io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        // Acknowledgements without a copy of the request, with the kernel's error text.
        socket.set_cap_ack(true)?;
        socket.set_ext_ack(true)?;
        socket.set_non_blocking(true)?;
        // As large as the system allows (the kernel caps it): room for a chunk of answers.
        socket.set_rx_buf_sz(1 << 20)?;
        Ok(Self { socket, seq: 1 })
    }

    /// Sends every request and returns one answer per request, in order: `None` for success,
    /// the kernel's refusal otherwise. `Err` when the socket failed; then nothing is known
    /// about the requests not yet answered.
    pub(super) fn exchange(
        &mut self,
        requests: Vec<Request>,
    ) -> std::io::Result<Vec<Option<ErrorMessage>>> {
        let mut answers = Vec::with_capacity(requests.len());
        let mut buf = Vec::new();
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let first = self.seq;
            buf.clear();
            let mut n = 0u32;
            for req in requests.by_ref().take(CHUNK) {
                let (flags, inner) = match req {
                    Request::Replace(m) => (
                        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
                        RouteNetlinkMessage::NewRoute(m),
                    ),
                    Request::Delete(m) => {
                        (NLM_F_REQUEST | NLM_F_ACK, RouteNetlinkMessage::DelRoute(m))
                    }
                };
                let mut header = NetlinkHeader::default();
                header.flags = flags;
                header.sequence_number = first.wrapping_add(n);
                let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
                msg.finalize();
                let at = buf.len();
                buf.resize(at + msg.buffer_len(), 0);
                msg.serialize(&mut buf[at..]);
                n += 1;
            }
            self.seq = first.wrapping_add(n);
            let sent = self.socket.send(&buf, 0)?;
            if sent != buf.len() {
                return Err(std::io::Error::other(format!(
                    "sent {sent} of {} bytes",
                    buf.len()
                )));
            }
            answers.extend(self.collect(first, n)?);
        }
        Ok(answers)
    }

    /// Reads the answers to the `n` requests numbered from `first`.
    fn collect(&self, first: u32, n: u32) -> std::io::Result<Vec<Option<ErrorMessage>>> {
        let mut got: Vec<Option<Option<ErrorMessage>>> = vec![None; n as usize];
        let mut missing = n as usize;
        let deadline = Instant::now() + ACK_WAIT;
        while missing > 0 {
            let data = match self.socket.recv_from_full() {
                Ok((data, _)) => data,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(std::io::Error::new(
                            ErrorKind::TimedOut,
                            format!("{missing} route requests unanswered"),
                        ));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut off = 0;
            while data.len() >= off + 16 {
                let word = |at: usize| {
                    u32::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
                };
                let len = word(off) as usize;
                if len < 16 || off + len > data.len() {
                    break;
                }
                let kind = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
                let index = word(off + 8).wrapping_sub(first) as usize;
                // Anything else (an answer to an earlier, failed exchange) is not ours.
                if kind == NLMSG_ERROR && index < got.len() && got[index].is_none() {
                    let answer = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(
                        &data[off..off + len],
                    ) {
                        Ok(m) => match m.payload {
                            NetlinkPayload::Error(e) if e.code.is_some() => Some(e),
                            _ => None,
                        },
                        Err(e) => {
                            return Err(std::io::Error::new(
                                ErrorKind::InvalidData,
                                format!("unreadable answer: {e}"),
                            ));
                        }
                    };
                    got[index] = Some(answer);
                    missing -= 1;
                }
                off += (len + 3) & !3;
            }
        }
        Ok(got.into_iter().map(Option::flatten).collect())
    }
}
