//! What can go wrong in a lab, each with what to do about it.

use std::path::PathBuf;

use tabby_dataplane::NetlinkError;
use tabby_dataplane::netns::NetnsError;
use tabby_dataplane::workload::PlumbError;

/// A lab operation failed. Messages name the lab, node or workload and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab name cannot be used.
    #[error("lab name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why not.
        reason: &'static str,
    },
    /// A lab of that name exists (or parts of one are left).
    #[error(
        "lab {name:?} already exists ({found}); remove it first with `tabby lab down --name {name}`"
    )]
    Exists {
        /// The lab.
        name: String,
        /// What was found.
        found: String,
    },
    /// No lab of that name.
    #[error("no lab named {name:?} (`tabby lab up --name {name}` makes one)")]
    NotFound {
        /// The lab.
        name: String,
    },
    /// No node or workload of that name in the lab.
    #[error("lab {lab:?} has no {what} {name:?}; {hint}")]
    UnknownTarget {
        /// The lab.
        lab: String,
        /// "workload" or "node or workload".
        what: &'static str,
        /// The name given.
        name: String,
        /// Known names, or a guess.
        hint: String,
    },
    /// The lab's state file is unreadable.
    #[error("lab state {}: {reason}; `tabby lab down --name {lab}` removes the lab", path.display())]
    State {
        /// The lab.
        lab: String,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file operation failed.
    #[error("{step} {}: {error}", path.display())]
    Io {
        /// What was being done.
        step: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        error: std::io::Error,
    },
    /// A namespace operation failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The CNI plugin refused a workload (the lab creates pods through it, as a kubelet does).
    #[error("CNI {command} for {workload} failed (code {code}): {msg}")]
    Cni {
        /// ADD or DEL.
        command: &'static str,
        /// The workload (`namespace/name`).
        workload: String,
        /// The CNI error code.
        code: u64,
        /// The plugin's message.
        msg: String,
    },
    /// A netlink request failed.
    #[error("{context}: {error}")]
    Netlink {
        /// What was being made.
        context: String,
        /// What failed (boxed: rtnetlink's errors are large).
        #[source]
        error: Box<NetlinkError>,
    },
    /// A workload could not be plumbed.
    #[error(transparent)]
    Plumb(Box<PlumbError>),
    /// A process could not be started.
    #[error("cannot start {what}: {error}")]
    Spawn {
        /// Which process.
        what: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// A process started but did not come up.
    #[error("{what} did not come up: {reason}")]
    NotReady {
        /// Which process.
        what: String,
        /// What was seen (with where its log is).
        reason: String,
    },
    /// The datastore could not be opened or used.
    #[error("lab datastore {url}: {error}")]
    Store {
        /// Its URL.
        url: String,
        /// Why (boxed: store errors are large).
        #[source]
        error: Box<tabby_store::StoreError>,
    },
    /// A write of resources was refused.
    #[error("{0}")]
    Client(Box<tabby_client::ClientError>),
    /// The input names things the lab cannot make; nothing was changed.
    #[error("{}", .0.join("\n"))]
    Input(Vec<String>),
    /// The machine cannot do what was asked.
    #[error("{0}")]
    Unsupported(String),
}

impl LabError {
    pub(crate) fn io(
        step: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |error| Self::Io { step, path, error }
    }

    pub(crate) fn netlink(context: impl Into<String>) -> impl FnOnce(NetlinkError) -> Self {
        let context = context.into();
        move |error| Self::Netlink {
            context,
            error: Box::new(error),
        }
    }
}

impl From<tabby_client::ClientError> for LabError {
    fn from(e: tabby_client::ClientError) -> Self {
        Self::Client(Box::new(e))
    }
}

impl LabError {
    pub(crate) fn store(url: &str) -> impl FnOnce(tabby_store::StoreError) -> Self {
        let url = url.to_owned();
        move |error| Self::Store {
            url,
            error: Box::new(error),
        }
    }
}

impl From<PlumbError> for LabError {
    fn from(e: PlumbError) -> Self {
        Self::Plumb(Box::new(e))
    }
}
