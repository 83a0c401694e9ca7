//! What a user sees when an etcd datastore cannot be used: nothing listening, TLS files that
//! are missing, wrong or not asked for, a prefix holding someone else's keys. Each error
//! names what to fix; nothing is written.

#![cfg(feature = "etcd")]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use tabby_store::conformance::ScratchDir;
use tabby_store::conformance::etcd::{EtcdFixture, make_certificates};
use tabby_store::etcd::EtcdStore;
use tabby_store::etcd::server::{ClusterSpec, EtcdCluster};
use tabby_store::{Datastore, Key, StoreError};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn open_err(url: &str) -> StoreError {
    match EtcdStore::open(url) {
        Ok(_) => panic!("{url} must not open"),
        Err(err) => err,
    }
}

#[test]
fn an_endpoint_where_nothing_listens_is_named_with_the_reason() {
    // A port just freed: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("etcd://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let err = open_err(&url);
    let message = err.to_string();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    assert!(message.contains("cannot reach etcd"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "a refused connection is reported promptly"
    );
}

#[test]
fn a_prefix_holding_foreign_keys_is_refused_and_left_untouched() {
    let etcd = EtcdFixture::start("foreign", 1);
    let member = etcd.members().members()[0].client.to_string();
    let etcdctl = |args: &[&str]| {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=http://{member}"))
            .args(args)
            .output()
            .expect("etcdctl runs");
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    etcdctl(&[
        "put",
        "/calico/resources/v3/ippools/default",
        "{\"cidr\":\"10.0.0.0/8\"}",
    ]);

    let err = open_err(&etcd.url("/calico"));
    let StoreError::ForeignPrefix {
        prefix, example, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(prefix, "/calico");
    assert_eq!(example, "/calico/resources/v3/ippools/default");
    assert!(err.to_string().contains("name another prefix"), "{err}");
    assert_eq!(
        etcdctl(&["get", "--prefix", "/calico", "--keys-only"]).trim(),
        "/calico/resources/v3/ippools/default",
        "nothing was written under the foreign prefix"
    );

    // A marker that is not ours is foreign too; a neighbouring prefix is fine.
    etcdctl(&["put", "/other/schema", "v2"]);
    assert!(matches!(
        open_err(&etcd.url("/other")),
        StoreError::ForeignPrefix { .. }
    ));
    let store = EtcdStore::open(&etcd.url("/calico-tabby")).expect("an empty prefix opens");
    store
        .create(&Key::new("Tier", "", "default"), "{}")
        .expect("write");
    EtcdStore::open(&etcd.url("/calico-tabby")).expect("our own prefix opens again");
}

/// Writes a CA, a server certificate for 127.0.0.1 and a client certificate with openssl.
#[test]
fn tls_works_with_the_right_files_and_explains_the_wrong_ones() {
    let scratch = ScratchDir::new("etcd-tls");
    let certs = scratch.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    make_certificates(&certs, "ca", LOOPBACK);
    // A second CA that signed nothing the member shows.
    let other = scratch.path().join("other");
    std::fs::create_dir_all(&other).expect("other dir");
    make_certificates(&other, "other-ca", LOOPBACK);

    let spec = ClusterSpec::on_loopback(scratch.path().join("etcd"), 1)
        .expect("ports")
        .with_client_tls(
            certs.join("server.pem"),
            certs.join("server.key"),
            Some(certs.join("ca.pem")),
        )
        .expect("health ports");
    let cluster = EtcdCluster::start(spec).expect("a TLS member starts");
    let base = cluster.url("/tls");
    assert!(base.starts_with("etcds://"), "{base}");
    let c = |f: &str| certs.join(f).display().to_string();

    let good = format!(
        "{base}?ca={}&cert={}&key={}",
        c("ca.pem"),
        c("client.pem"),
        c("client.key")
    );
    let store = EtcdStore::open(&good).expect("the right files open");
    let rev = store
        .create(&Key::new("Tier", "", "default"), "{}")
        .expect("write over TLS");
    assert!(
        store
            .get(&Key::new("Tier", "", "default"))
            .unwrap()
            .is_some()
    );
    assert!(rev > 0);

    // The member's certificate is not signed by this CA.
    let wrong_ca = format!(
        "{base}?ca={}/other-ca.pem&cert={}&key={}",
        other.display(),
        c("client.pem"),
        c("client.key")
    );
    let message = open_err(&wrong_ca).to_string();
    assert!(
        message.contains("TLS") || message.contains("certificate"),
        "{message}"
    );
    assert!(
        message.contains("ca="),
        "names the option to check: {message}"
    );

    // The member wants a client certificate and gets none.
    let message = open_err(&format!("{base}?ca={}", c("ca.pem"))).to_string();
    assert!(
        message.contains("cert=") || message.contains("certificate"),
        "{message}"
    );

    // Files that cannot be used are named before any connection.
    let missing = open_err(&format!("{base}?ca=/nonexistent/ca.pem"));
    assert!(
        matches!(missing, StoreError::InvalidUrl { .. }),
        "{missing:?}"
    );
    assert!(
        missing.to_string().contains("/nonexistent/ca.pem"),
        "{missing}"
    );
    let not_pem = open_err(&format!("{base}?ca={}", c("server.ext")));
    assert!(not_pem.to_string().contains("is not PEM"), "{not_pem}");

    // Plain etcd:// to a TLS member.
    let plain = base.replacen("etcds://", "etcd://", 1);
    let message = open_err(&plain).to_string();
    assert!(message.contains("etcds://"), "suggests TLS: {message}");
}
