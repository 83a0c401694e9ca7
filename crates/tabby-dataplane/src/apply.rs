//! Writing nft scripts to the kernel: the [`NftApply`] trait, the real [`NftCli`] (`nft -f -`,
//! and element-only changes over nfnetlink through [`SetElementWriter`]) and the recording
//! [`FakeNft`] for tests.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::netns::{self, NetnsError};
use crate::nfnl::{ElementBatch, ElementOp, NfSetWriter};

/// A write of an nft script failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be started (missing, not executable) or its pipes failed.
    #[error("cannot run {program}: {step}: {error}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// What was being done (spawn, write the script, wait).
        step: &'static str,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// `nft` refused the script; nothing of it was applied (a script is one transaction).
    #[error("{program} rejected a {lines}-line script ({status}): {stderr}")]
    Rejected {
        /// The program.
        program: PathBuf,
        /// Its exit status.
        status: String,
        /// How long the script was.
        lines: usize,
        /// What nft said: the failing line and why.
        stderr: String,
    },
    /// The namespace to write into could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The kernel refused one message of an element batch; none of the batch was applied (a
    /// batch is one transaction).
    #[error(
        "the kernel refused to {op} {count} element(s) of set {set} in table inet {table}: {reason}"
    )]
    ElementsRejected {
        /// The table.
        table: String,
        /// The set.
        set: String,
        /// Add or delete.
        op: ElementOp,
        /// How many elements the message held.
        count: usize,
        /// The kernel's error number.
        errno: i32,
        /// What it means, with the kernel's own text when it gave one.
        reason: String,
    },
    /// The kernel refused an element batch as a whole; none of it was applied.
    #[error("the kernel refused an nfnetlink batch of {messages} message(s): {reason}")]
    BatchRejected {
        /// Element messages in the batch.
        messages: usize,
        /// The kernel's error number.
        errno: i32,
        /// What it means.
        reason: String,
    },
    /// Talking to the kernel over nfnetlink failed; whether the batch was applied is unknown.
    #[error("nfnetlink: cannot {step}: {error}")]
    Netlink {
        /// What was being done.
        step: &'static str,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The kernel's answers to an element batch were malformed or incomplete.
    #[error("nfnetlink: {0}")]
    NetlinkReply(String),
    /// The fake was told to fail.
    #[error("fake nft failure: {0}")]
    Fake(String),
}

/// Something that applies nft scripts as one transaction each.
pub trait NftApply {
    /// Applies `script` entirely or not at all.
    fn apply(&mut self, script: &str) -> Result<(), NftError>;

    /// The fast path for changes that are only set elements, when this writer has one (the
    /// table then hands it an [`ElementBatch`] instead of a script).
    fn element_writer(&mut self) -> Option<&mut dyn SetElementWriter> {
        None
    }
}

/// Something that writes set-element changes as one transaction.
pub trait SetElementWriter {
    /// Applies `batch` entirely or not at all.
    fn write_elements(&mut self, batch: &ElementBatch) -> Result<(), NftError>;
}

/// The real writer: runs `nft -f -` with the script on its standard input, and writes
/// element-only changes over nfnetlink ([`NfSetWriter`]) unless told not to.
#[derive(Debug, Clone)]
pub struct NftCli {
    program: PathBuf,
    netns: Option<PathBuf>,
    elements: Option<NfSetWriter>,
}

impl Default for NftCli {
    fn default() -> Self {
        Self::new()
    }
}

impl NftCli {
    /// `nft` from `PATH`, in the caller's network namespace.
    pub fn new() -> Self {
        Self {
            program: PathBuf::from("nft"),
            netns: None,
            elements: Some(NfSetWriter::new()),
        }
    }

    /// Writes everything through `nft`, element changes too (no nfnetlink fast path).
    pub fn scripts_only(mut self) -> Self {
        self.elements = None;
        self
    }

    /// Uses another program (a full path, or a wrapper).
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Writes into the namespace at `path` instead (`nft` is started there).
    pub fn in_netns(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        if self.elements.is_some() {
            self.elements = Some(NfSetWriter::in_netns(path.clone()));
        }
        self.netns = Some(path);
        self
    }

    fn run(program: &Path, script: &str) -> Result<(), NftError> {
        let spawn_err = |step| {
            move |error| NftError::Spawn {
                program: program.to_owned(),
                step,
                error,
            }
        };
        let mut child = Command::new(program)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err("spawn"))?;
        if let Some(mut stdin) = child.stdin.take() {
            // nft reads all input before it answers, so writing first cannot deadlock.
            stdin
                .write_all(script.as_bytes())
                .map_err(spawn_err("write the script"))?;
        }
        let out = child.wait_with_output().map_err(spawn_err("wait"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(NftError::Rejected {
            program: program.to_owned(),
            status: out.status.to_string(),
            lines: script.lines().count(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

impl NftApply for NftCli {
    fn apply(&mut self, script: &str) -> Result<(), NftError> {
        let _span = tracing::debug_span!("nft", lines = script.lines().count()).entered();
        match &self.netns {
            None => Self::run(&self.program, script),
            Some(path) => netns::run_in(path, || Self::run(&self.program, script))?,
        }
    }

    fn element_writer(&mut self) -> Option<&mut dyn SetElementWriter> {
        self.elements
            .as_mut()
            .map(|w| w as &mut dyn SetElementWriter)
    }
}

/// Records scripts (and, when `netlink` is set, element batches) instead of applying them;
/// can be told to fail.
#[derive(Debug, Default, Clone)]
pub struct FakeNft {
    /// Every script it was given, in order (failed ones too).
    pub scripts: Vec<String>,
    /// Whether it offers the element fast path, as [`NftCli`] does.
    pub netlink: bool,
    /// Every element batch it was given, in order (failed ones too).
    pub batches: Vec<ElementBatch>,
    /// When set, the next write (script or batch) fails with this message (and clears it).
    pub fail_next: Option<String>,
}

impl FakeNft {
    /// A fake with the element fast path.
    pub fn with_netlink() -> Self {
        Self {
            netlink: true,
            ..Self::default()
        }
    }

    fn outcome(&mut self) -> Result<(), NftError> {
        match self.fail_next.take() {
            Some(msg) => Err(NftError::Fake(msg)),
            None => Ok(()),
        }
    }
}

impl NftApply for FakeNft {
    fn apply(&mut self, script: &str) -> Result<(), NftError> {
        self.scripts.push(script.to_owned());
        self.outcome()
    }

    fn element_writer(&mut self) -> Option<&mut dyn SetElementWriter> {
        if self.netlink { Some(self) } else { None }
    }
}

impl SetElementWriter for FakeNft {
    fn write_elements(&mut self, batch: &ElementBatch) -> Result<(), NftError> {
        self.batches.push(batch.clone());
        self.outcome()
    }
}
