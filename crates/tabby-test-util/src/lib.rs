//! Test fixtures shared by tabby's crates, so that no crate copies another's: scratch folders
//! that remove themselves, the locator for the external conformance vectors in
//! `../shared/conformance/` (read in place, never copied into the project), and BIRD 2 as a
//! real BGP neighbour ([`bird`]).
//!
//! Only tests and benchmarks depend on this crate; production code must not.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

pub mod bird;

/// A folder for one test's files, unique per process and call, removed on drop (also when the
/// test panics).
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    files: AtomicUsize,
}

impl ScratchDir {
    /// Creates `$TMPDIR/tabby-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("tabby-{tag}-{}-{n}", std::process::id()));
        // A leftover of a crashed run with a recycled pid would show the test old data.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("creating {}: {err}", path.display()));
        Self {
            path,
            files: AtomicUsize::new(0),
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path for a new database file in the folder, different on every call.
    pub fn file(&self, stem: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.path.join(format!("{stem}-{n}.db"))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The shared conformance folder beside the repository (`<repo>/../shared/conformance`).
const CONFORMANCE_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/conformance");

/// Whether this process runs as root, for tests that need the kernel (namespaces, nftables).
///
/// Without root the test prints that it was skipped; under `CI=true` a missing root is a
/// failure, because CI must run these tests.
#[expect(
    clippy::print_stdout,
    reason = "a skipped test says so on the test's output"
)]
pub fn root_or_skip(test: &str) -> bool {
    let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "{test}: needs root, and CI=true: not running it is a failure"
        );
        println!("{test}: skipped (needs root)");
    }
    root
}

/// Finds `../shared/conformance/<sub>`.
///
/// Returns `None`, after printing why, when the folder is absent, so that a user's clone without
/// the shared folder still passes `cargo test`. Under `CI=true` an absent folder is a failure:
/// CI must never pass by silently skipping.
#[expect(
    clippy::print_stdout,
    reason = "a skipped test says so on the test's output"
)]
pub fn conformance_dir(test: &str, sub: &str) -> Option<PathBuf> {
    let path = Path::new(CONFORMANCE_ROOT).join(sub);
    if path.is_dir() {
        return Some(path);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "{test}: shared folder {} is missing and CI=true, so this is a failure",
        path.display()
    );
    println!(
        "{test}: skipped, shared folder {} is missing (set CI=true to make this fail)",
        path.display()
    );
    None
}

/// Reads a JSON Lines file: each entry is (1-based line number, object). Panics with the file
/// and line on anything malformed, and on an empty file (a vector file with no vectors would
/// make its tests pass vacuously).
pub fn read_jsonl(path: &Path) -> Vec<(usize, Value)> {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} must be readable: {e}", path.display()));
    let rows: Vec<(usize, Value)> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let v = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: invalid JSON: {e}", path.display(), i + 1));
            (i + 1, v)
        })
        .collect();
    assert!(!rows.is_empty(), "{} holds no vectors", path.display());
    rows
}

/// Runs a command, which must succeed: panics with the command and its standard error
/// otherwise. Returns its output.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Joins network namespaces `a` and `b` (by name) with a veth pair named `eth0` at both ends,
/// left down and without addresses.
pub fn veth_eth0(a: &str, b: &str) {
    sh(&[
        "ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b,
    ]);
}

/// Runs a command with `input` on its standard input and collects its output.
pub fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} must start: {e}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("the child must take its input");
    child.wait_with_output().expect("the child must finish")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dirs_are_unique_and_removed_on_drop() {
        let a = ScratchDir::new("util");
        let b = ScratchDir::new("util");
        assert_ne!(a.path(), b.path());
        assert_ne!(a.file("x"), a.file("x"));
        let kept = a.path().to_path_buf();
        assert!(kept.is_dir());
        drop(a);
        assert!(!kept.exists());
    }

    #[test]
    fn missing_shared_folder_skips_locally_and_fails_under_ci() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let outcome = std::panic::catch_unwind(|| conformance_dir("probe", "no-such-folder"));
        match outcome {
            Ok(found) => {
                assert!(!ci, "under CI=true a missing folder must fail");
                assert_eq!(found, None);
            }
            Err(_) => assert!(ci, "outside CI a missing folder must only skip"),
        }
    }
}

/// Deterministic, seedable choices for generated test inputs and benchmarks (splitmix64):
/// a failing seed reproduces exactly.
#[derive(Debug, Clone)]
pub struct Dice(pub u64);

impl Dice {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with the given percentage.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// True once in `n` times on average.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next_u64().is_multiple_of(n)
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
