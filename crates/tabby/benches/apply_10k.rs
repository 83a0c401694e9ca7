//! `tabby apply` of a 10,000-document file into a fresh SQLite datastore, end to end through
//! the release binary (read, parse, validate, one commit). Prints one JSON line per figure;
//! never fails on a slow machine.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Command;
use std::time::Instant;

const DOCS: usize = 10_000;

/// A realistic mix: namespaced policies with rules, workload endpoints, global network sets.
fn manifest() -> String {
    let mut text = String::new();
    for i in 0..DOCS {
        let ns = format!("ns-{}", i % 100);
        match i % 3 {
            0 => write!(
                text,
                "---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: pol-{i}, namespace: {ns}}}\n\
                 spec:\n  order: {i}\n  selector: app == 'app-{i}' && tier in {{'web', 'api'}}\n  ingress:\n  \
                 - action: Allow\n    protocol: TCP\n    source: {{selector: role == 'client-{i}'}}\n    \
                 destination: {{ports: [80, '8000:8080', http]}}\n  egress:\n  - action: Deny\n    \
                 destination: {{nets: [10.{}.0.0/16]}}\n",
                i % 256
            ),
            1 => write!(
                text,
                "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: node-{n}-k8s-pod-{i}-eth0\n  \
                 namespace: {ns}\n  labels: {{app: app-{i}, tier: web}}\nspec:\n  node: node-{n}\n  pod: pod-{i}\n  \
                 endpoint: eth0\n  interfaceName: tb{i:011x}\n  ipNetworks: [10.65.{}.{}/32]\n  profiles: [kns.{ns}]\n  \
                 ports: [{{name: http, protocol: TCP, port: 8080}}]\n",
                (i / 250) % 256,
                i % 250,
                n = i % 50
            ),
            _ => write!(
                text,
                "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: set-{i}\n  labels: {{feed: f-{i}}}\n\
                 spec:\n  nets: [192.0.{}.0/24, 198.51.100.{}/32]\n",
                i % 256,
                i % 256
            ),
        }
        .expect("writing to a String cannot fail");
    }
    text
}

fn main() {
    let dir = std::env::temp_dir().join(format!("tabby-bench-apply-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("10k.yaml");
    std::fs::write(&file, manifest()).expect("write manifest");
    let url = format!("sqlite:{}", dir.join("bench.db").display());
    let run = || {
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_tabby"))
            .args(["apply", "-f"])
            .arg(&file)
            .env("TABBY_DATASTORE", &url)
            .output()
            .expect("tabby must run");
        let elapsed = start.elapsed();
        assert!(
            out.status.success(),
            "apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        elapsed
    };
    let create = run();
    let unchanged = run();
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let mut stdout = std::io::stdout().lock();
    for (phase, t) in [("create", create), ("reapply_unchanged", unchanged)] {
        writeln!(
            stdout,
            "{{\"bench\":\"apply_10k\",\"phase\":\"{phase}\",\"documents\":{DOCS},\"file_bytes\":{size},\"seconds\":{:.3}}}",
            t.as_secs_f64()
        )
        .expect("stdout");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
