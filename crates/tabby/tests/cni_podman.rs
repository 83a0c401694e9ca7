//! tabby as podman's CNI plugin, for real: podman 4 with its CNI backend and runc (settings
//! from reference/test-infra.md), run in a network namespace that acts as the host, with
//! `tabby node run` in that namespace. Two containers get addresses from the pool and
//! endpoints with their Pods' labels, reach each other while policy allows, are cut off when
//! a Kubernetes NetworkPolicy denies, and `podman rm` releases their addresses (`ipam show`
//! and `ipam check` agree) and removes their veths.
//!
//! Needs root and podman. Without root the test says it was skipped; under `CI=true` that is
//! a failure.

#[path = "support/host.rs"]
mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use support::{
    DEADLINE, NODE, TABBY, datastore, host_namespace, ipam_state, start_agent, tabby, text,
    workload_links,
};
use tabby_dataplane::NetNs;
use tabby_test_util::ScratchDir;
use tabby_test_util::root_or_skip as is_root;

const NETWORK: &str = "tabbynet";

/// A private podman: storage, configuration and CNI plugins under a scratch folder, run in the
/// host namespace. Every container is removed when it is dropped.
struct Podman {
    root: PathBuf,
    host: PathBuf,
}

impl Podman {
    fn new(root: &Path, host: &NetNs, db: &Path) -> Self {
        let rootfs = root.join("rootfs");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "run"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("static busybox");
        for applet in ["sh", "ip", "ping", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("applet link");
        }
        let bin = root.join("cni/bin");
        let netd = root.join("cni/net.d");
        std::fs::create_dir_all(&bin).expect("cni bin");
        std::fs::create_dir_all(&netd).expect("cni net.d");
        std::fs::create_dir_all(root.join("podman/tmp")).expect("podman tmp");
        // The plugin and its IPAM are the tabby binary under two names.
        for name in ["tabby", "tabby-ipam"] {
            std::os::unix::fs::symlink(TABBY, bin.join(name)).expect("plugin link");
        }
        let r = root.display();
        std::fs::write(
            root.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
events_logfile_path = \"{r}/podman/events.log\"\nruntime = \"runc\"\ntmp_dir = \"{r}/podman/tmp\"\n\
[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{r}/cni/bin\"]\n\
network_config_dir = \"{r}/cni/net.d\"\ndefault_network = \"{NETWORK}\"\n"
            ),
        )
        .expect("containers.conf");
        std::fs::write(
            root.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{r}/podman/storage\"\nrunroot = \"{r}/podman/run\"\n"
            ),
        )
        .expect("storage.conf");
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [{
                "type": "tabby",
                "datastore": format!("sqlite:{}", db.display()),
                "nodename": NODE,
                "ipam": {"type": "tabby-ipam"},
            }],
        });
        std::fs::write(
            netd.join(format!("{NETWORK}.conflist")),
            conflist.to_string(),
        )
        .expect("conflist");
        Self {
            root: root.to_path_buf(),
            host: host.path().to_path_buf(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.host.display()))
            .arg("podman")
            .arg("--cni-config-dir")
            .arg(self.root.join("cni/net.d"))
            .args(args)
            .env("CONTAINERS_CONF", self.root.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.root.join("storage.conf"))
            .output()
            .expect("run podman")
    }

    fn start(&self, name: &str) {
        let rootfs = self.root.join("rootfs");
        let out = self.run(&[
            "run",
            "-d",
            "--name",
            name,
            "--rootfs",
            &rootfs.display().to_string(),
            "/bin/sleep",
            "600",
        ]);
        assert!(out.status.success(), "podman run {name}: {}", text(&out));
    }

    fn ip(&self, name: &str) -> IpAddr {
        let format = format!("{{{{.NetworkSettings.Networks.{NETWORK}.IPAddress}}}}");
        let out = self.run(&["inspect", name, "--format", &format]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name} has no address: {e}: {}", text(&out)))
    }

    fn ping(&self, from: &str, to: IpAddr) -> bool {
        let to = to.to_string();
        self.run(&["exec", from, "ping", "-c", "1", "-W", "1", &to])
            .status
            .success()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-a", "-f", "-t", "0"]);
    }
}

/// Waits until `probe` gives `want`, or fails with `what`.
fn eventually(what: &str, want: bool, mut probe: impl FnMut() -> bool) {
    let start = Instant::now();
    while probe() != want {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: still not so after {DEADLINE:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn podman_containers_get_addresses_policy_and_release_them() {
    if !is_root("podman_containers_get_addresses_policy_and_release_them") {
        return;
    }
    let dir = ScratchDir::new("cni-podman");
    let db = datastore(&dir, "10.67.0.0/24");
    // The Pods carry the labels their endpoints get (podman names the pod after the
    // container: K8S_POD_NAME).
    let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: tbpm-web, namespace: default, labels: {app: web}}\nspec: {containers: [{name: c}]}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: tbpm-db, namespace: default, labels: {app: db}}\nspec: {containers: [{name: c}]}\n";
    let out = tabby(&db, &["apply", "-f", "-"], pods);
    assert!(out.status.success(), "{}", text(&out));

    let host = host_namespace("tbpm-host");
    let _agent = start_agent(&host, &db, &dir);
    let podman = Podman::new(dir.path(), &host, &db);
    podman.start("tbpm-web");
    podman.start("tbpm-db");
    let (web, db_ip) = (podman.ip("tbpm-web"), podman.ip("tbpm-db"));
    let pool: ipnet::IpNet = "10.67.0.0/24".parse().expect("literal");
    assert!(
        pool.contains(&web) && pool.contains(&db_ip) && web != db_ip,
        "{web} {db_ip}"
    );

    let (in_use, clean, report) = ipam_state(&db);
    assert_eq!(in_use, 2);
    assert!(clean, "{report}");
    // The datastore holds their Pods, so the plugin records each on its Pod (Calico's
    // Kubernetes-datastore way) and writes no second endpoint for it.
    let pod = tabby(
        &db,
        &["get", "pod", "tbpm-db", "-n", "default", "-o", "json"],
        "",
    );
    let v: serde_json::Value = serde_json::from_slice(&pod.stdout).expect("pod json");
    assert_eq!(v["status"]["podIP"], db_ip.to_string(), "{v}");
    assert_eq!(
        v["metadata"]["annotations"]["cni.projectcalico.org/podIPs"],
        format!("{db_ip}/32"),
        "{v}"
    );
    let weps = tabby(&db, &["get", "wep", "-A", "-o", "name"], "");
    assert!(
        String::from_utf8_lossy(&weps.stdout).trim().is_empty(),
        "{}",
        text(&weps)
    );
    assert_eq!(workload_links(&host).len(), 2);

    eventually("web reaches db", true, || podman.ping("tbpm-web", db_ip));
    eventually("db reaches web", true, || podman.ping("tbpm-db", web));

    let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-deny, namespace: default}\nspec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress]}\n";
    let out = tabby(&db, &["apply", "-f", "-"], deny);
    assert!(out.status.success(), "{}", text(&out));
    eventually("web is cut off from db", false, || {
        podman.ping("tbpm-web", db_ip)
    });
    assert!(podman.ping("tbpm-db", web), "db -> web is still allowed");

    let out = podman.run(&["rm", "-f", "-t", "0", "tbpm-web", "tbpm-db"]);
    assert!(out.status.success(), "{}", text(&out));
    let (in_use, clean, report) = ipam_state(&db);
    assert_eq!(in_use, 0, "podman rm released the addresses");
    assert!(clean, "{report}");
    assert!(
        workload_links(&host).is_empty(),
        "{:?}",
        workload_links(&host)
    );
    let pod = tabby(
        &db,
        &["get", "pod", "tbpm-db", "-n", "default", "-o", "json"],
        "",
    );
    let v: serde_json::Value = serde_json::from_slice(&pod.stdout).expect("pod json");
    assert!(v["status"].get("podIP").is_none(), "{v}");
    assert_eq!(v["metadata"]["labels"]["app"], "db", "{v}");
}
