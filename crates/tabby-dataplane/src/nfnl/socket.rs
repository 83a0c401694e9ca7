//! The real writer: one `NETLINK_NETFILTER` socket, opened in the target namespace on first
//! use and kept (a socket belongs to the namespace it was made in, whatever thread uses it).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

use super::codec::{ElementBatch, check_replies, encode, parse_replies};
use crate::apply::{NftError, SetElementWriter};
use crate::netns;

/// Writes element batches to the kernel over nfnetlink. After any failure the socket is
/// dropped and a new one opened by the next write, so no stale answer is ever read as new.
pub struct NfSetWriter {
    netns: Option<PathBuf>,
    socket: Option<Socket>,
    seq: u32,
}

impl std::fmt::Debug for NfSetWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NfSetWriter")
            .field("netns", &self.netns)
            .field("open", &self.socket.is_some())
            .finish()
    }
}

impl Default for NfSetWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for NfSetWriter {
    /// A copy opens its own socket (a socket is never shared).
    fn clone(&self) -> Self {
        Self {
            netns: self.netns.clone(),
            socket: None,
            seq: 1,
        }
    }
}

fn io_err(step: &'static str) -> impl FnOnce(std::io::Error) -> NftError {
    move |error| NftError::Netlink { step, error }
}

fn open_here() -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    // Acknowledgements without a copy of the request, with the kernel's error text when it
    // has one.
    socket.set_cap_ack(true)?;
    socket.set_ext_ack(true)?;
    // The kernel handles a batch within the send call, so every answer is queued when it
    // returns: reading until the queue is empty never waits.
    socket.set_non_blocking(true)?;
    Ok(socket)
}

/// Every datagram queued on the socket, parsed.
fn drain(socket: &Socket) -> Result<Vec<super::Reply>, NftError> {
    let mut replies = Vec::new();
    loop {
        match socket.recv_from_full() {
            Ok((buf, _)) => replies.extend(parse_replies(&buf).map_err(NftError::NetlinkReply)?),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(replies),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(NftError::Netlink {
                    step: "receive acknowledgements",
                    error,
                });
            }
        }
    }
}

impl NfSetWriter {
    /// Writes into the caller's network namespace.
    pub fn new() -> Self {
        Self {
            netns: None,
            socket: None,
            seq: 1,
        }
    }

    /// Writes into the namespace at `path` (the socket is made there).
    pub fn in_netns(path: impl Into<PathBuf>) -> Self {
        Self {
            netns: Some(path.into()),
            ..Self::new()
        }
    }

    fn open(netns: Option<&Path>) -> Result<Socket, NftError> {
        let step = "open a NETLINK_NETFILTER socket";
        match netns {
            None => open_here().map_err(io_err(step)),
            Some(path) => netns::run_in(path, open_here)?.map_err(io_err(step)),
        }
    }

    /// Writes `batch` as one transaction and checks every acknowledgement.
    pub fn write(&mut self, batch: &ElementBatch) -> Result<(), NftError> {
        if batch.changes.is_empty() {
            return Ok(());
        }
        let _span = tracing::debug_span!(
            "nfnl",
            table = %batch.table,
            sets = batch.changes.len(),
            elements = batch.elements()
        )
        .entered();
        let result = self.write_once(batch);
        if result.is_err() {
            self.socket = None;
        }
        result
    }

    fn write_once(&mut self, batch: &ElementBatch) -> Result<(), NftError> {
        if self.socket.is_none() {
            self.socket = Some(Self::open(self.netns.as_deref())?);
        }
        let Some(socket) = self.socket.as_ref() else {
            return Err(NftError::NetlinkReply("socket vanished".to_owned()));
        };
        let first = self.seq;
        let messages = u32::try_from(batch.changes.len()).unwrap_or(u32::MAX);
        self.seq = self.seq.wrapping_add(messages).wrapping_add(2);
        let bytes = encode(batch, first);
        let sent = socket.send(&bytes, 0).map_err(io_err("send the batch"))?;
        if sent != bytes.len() {
            return Err(NftError::NetlinkReply(format!(
                "sent {sent} of {} bytes",
                bytes.len()
            )));
        }
        let replies = drain(socket)?;
        check_replies(batch, first, &replies)
    }
}

impl SetElementWriter for NfSetWriter {
    fn write_elements(&mut self, batch: &ElementBatch) -> Result<(), NftError> {
        self.write(batch)
    }
}
