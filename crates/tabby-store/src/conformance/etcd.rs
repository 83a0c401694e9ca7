//! A real etcd for backends' tests and benchmarks: members started on free loopback ports,
//! their data on tmpfs when there is one (etcd syncs every write; tests need not wait for a
//! disk), all removed on drop, also when the test fails.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Datastore;
use crate::etcd::EtcdStore;
use crate::etcd::server::EtcdCluster;

/// A running etcd (one member or a cluster) in a folder of its own.
#[derive(Debug)]
pub struct EtcdFixture {
    // Declared first: the members stop before their folder goes.
    cluster: EtcdCluster,
    dir: TmpfsDir,
    prefixes: AtomicUsize,
}

impl EtcdFixture {
    /// Starts `members` members; panics saying why if etcd cannot run.
    pub fn start(tag: &str, members: usize) -> Self {
        let dir = TmpfsDir::new(tag);
        let cluster = EtcdCluster::start_on_loopback(dir.path(), members)
            .unwrap_or_else(|err| panic!("starting etcd for {tag}: {err}"));
        Self {
            cluster,
            dir,
            prefixes: AtomicUsize::new(0),
        }
    }

    /// The members, to stop, kill and restart them.
    pub fn cluster(&mut self) -> &mut EtcdCluster {
        &mut self.cluster
    }

    /// The members, read-only.
    pub fn members(&self) -> &EtcdCluster {
        &self.cluster
    }

    /// The folder holding the members' data and logs.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A prefix no store of this fixture has used yet, like `/t3`.
    pub fn fresh_prefix(&self) -> String {
        format!("/t{}", self.prefixes.fetch_add(1, Ordering::Relaxed))
    }

    /// The URL of every member with `prefix`.
    pub fn url(&self, prefix: &str) -> String {
        self.cluster.url(prefix)
    }

    /// A store under a fresh prefix: an empty datastore, through every member.
    pub fn fresh(&self) -> Box<dyn Datastore> {
        let url = self.url(&self.fresh_prefix());
        Box::new(EtcdStore::open(&url).unwrap_or_else(|err| panic!("opening {url}: {err}")))
    }
}

/// Writes a test PKI into `dir` with openssl: a CA (`<ca_name>.pem`, `.key`), a server
/// certificate for `server_ip` (`server.pem`, `.key`) and a client certificate (`client.pem`,
/// `.key`), both signed by that CA and valid for two days. Panics saying which step failed.
pub fn make_certificates(dir: &Path, ca_name: &str, server_ip: IpAddr) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_key = format!("{ca_name}.key");
    let ca_pem = format!("{ca_name}.pem");
    let subject = format!("/CN={ca_name}");
    let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject];
    args.extend(ec);
    args.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    run(&args);
    for (name, usage, san) in [
        (
            "server",
            "serverAuth",
            format!("subjectAltName=IP:{server_ip}"),
        ),
        (
            "client",
            "clientAuth",
            "subjectAltName=DNS:tabby".to_owned(),
        ),
    ] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        std::fs::write(dir.join(&ext), format!("{san}\nextendedKeyUsage={usage}\n"))
            .expect("extension file");
        let subject = format!("/CN={name}");
        let mut args = vec!["req", "-new", "-subj", &subject];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr]);
        run(&args);
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ]);
    }
}

/// A folder under `/dev/shm` (or the temporary folder without one), removed on drop.
#[derive(Debug)]
struct TmpfsDir(PathBuf);

impl TmpfsDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!("tabby-etcd-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("creating {}: {err}", path.display()));
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpfsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
