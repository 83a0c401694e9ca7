//! A lab for a test, through the real `tabby lab` commands: uniquely named, removed when the
//! test ends however it ends.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tabby_test_util::run_with_stdin;

pub(crate) const TABBY: &str = env!("CARGO_BIN_EXE_tabby");

/// A lab brought up with `tabby lab up`; `tabby lab down` when dropped.
pub(crate) struct TestLab {
    pub(crate) name: String,
}

impl TestLab {
    /// `tag` (a few letters) keeps names readable; the process id and a counter keep them unique.
    pub(crate) fn up(tag: &str, nodes: usize) -> Self {
        Self::up_with(tag, &["--nodes", &nodes.to_string()])
    }

    /// Like [`TestLab::up`], with other `lab up` arguments.
    pub(crate) fn up_with(tag: &str, args: &[&str]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{tag}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Self { name };
        let mut all = vec!["up"];
        all.extend_from_slice(args);
        lab.ok(&all, "");
        lab
    }

    /// Runs `tabby lab SUB --name LAB ARGS...` with `stdin`.
    pub(crate) fn run(&self, args: &[&str], stdin: &str) -> Output {
        let (sub, rest) = args.split_first().expect("a lab subcommand");
        let mut cmd = Command::new(TABBY);
        cmd.args(["lab", sub, "--name", &self.name]).args(rest);
        run_with_stdin(cmd, stdin)
    }

    /// Like [`TestLab::run`], and it must succeed: its standard output.
    pub(crate) fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "tabby lab {args:?} --name {} failed:\n{}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Loads a file's text (YAML or JSON), with `--prune` if asked; the command's output.
    pub(crate) fn load(&self, text: &str, prune: bool) -> String {
        let mut args = vec!["load", "-f", "-"];
        if prune {
            args.push("--prune");
        }
        self.ok(&args, text)
    }

    /// The real matrix as JSON.
    pub(crate) fn matrix(&self, port: u16, protocol: &str) -> Value {
        let text = self.ok(
            &[
                "matrix",
                "-o",
                "json",
                "--port",
                &port.to_string(),
                "--protocol",
                protocol,
                "--timeout-ms",
                "700",
            ],
            "",
        );
        serde_json::from_str(&text).expect("lab matrix -o json prints JSON")
    }

    /// The lab's state file, as JSON.
    pub(crate) fn state(&self) -> Value {
        let root = std::env::var("TABBY_LAB_DIR").unwrap_or_else(|_| "/run/tabby/lab".to_owned());
        let path = Path::new(&root).join(&self.name).join("lab.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("lab.json is JSON")
    }

    /// Runs `tabby ipam ARGS... -o json` on the lab's datastore (a file, reachable from
    /// here) and parses what it prints; the exit status too (`check` fails on findings).
    #[allow(dead_code, reason = "only some test binaries look at the IPAM")]
    pub(crate) fn ipam(&self, args: &[&str]) -> (bool, Value) {
        let url = self.state()["datastore"]
            .as_str()
            .expect("datastore")
            .to_owned();
        let out = Command::new(TABBY)
            .args(["--datastore", &url, "ipam"])
            .args(args)
            .args(["-o", "json"])
            .output()
            .expect("run tabby ipam");
        let text = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "tabby ipam {args:?}: {e}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), v)
    }

    /// The names of this lab's network namespaces that exist.
    pub(crate) fn namespaces(&self) -> Vec<String> {
        let prefix = format!("tabby-lab-{}.", self.name);
        let mut found: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = Command::new(TABBY)
            .args(["lab", "down", "--name", &self.name])
            .output();
    }
}
