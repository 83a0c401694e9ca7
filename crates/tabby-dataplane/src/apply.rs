//! Writing nft scripts to the kernel: the [`NftApply`] trait, the real [`NftCli`] (`nft -f -`)
//! and the recording [`FakeNft`] for tests.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::netns::{self, NetnsError};

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
    /// The fake was told to fail.
    #[error("fake nft failure: {0}")]
    Fake(String),
}

/// Something that applies nft scripts as one transaction each.
pub trait NftApply {
    /// Applies `script` entirely or not at all.
    fn apply(&mut self, script: &str) -> Result<(), NftError>;
}

/// The real writer: runs `nft -f -` with the script on its standard input.
#[derive(Debug, Clone)]
pub struct NftCli {
    program: PathBuf,
    netns: Option<PathBuf>,
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
        }
    }

    /// Uses another program (a full path, or a wrapper).
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Writes into the namespace at `path` instead (`nft` is started there).
    pub fn in_netns(mut self, path: impl Into<PathBuf>) -> Self {
        self.netns = Some(path.into());
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
}

/// Records scripts instead of applying them; can be told to fail.
#[derive(Debug, Default, Clone)]
pub struct FakeNft {
    /// Every script it was given, in order (failed ones too).
    pub scripts: Vec<String>,
    /// When set, the next apply fails with this message (and clears it).
    pub fail_next: Option<String>,
}

impl NftApply for FakeNft {
    fn apply(&mut self, script: &str) -> Result<(), NftError> {
        self.scripts.push(script.to_owned());
        match self.fail_next.take() {
            Some(msg) => Err(NftError::Fake(msg)),
            None => Ok(()),
        }
    }
}
