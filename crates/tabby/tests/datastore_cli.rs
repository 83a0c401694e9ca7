//! `tabby datastore export|import|migrate` between a SQLite file and a real etcd member: every
//! resource and the IPAM state arrive, the copy is verified, and refusals write nothing.

use std::path::Path;
use std::process::{Command, Output};

use tabby_ipam::{AssignRequest, Ipam};
use tabby_store::conformance::etcd::EtcdFixture;
use tabby_store::sqlite::SqliteStore;
use tabby_test_util::ScratchDir;

const TABBY: &str = env!("CARGO_BIN_EXE_tabby");

fn tabby(url: &str, args: &[&str]) -> Output {
    Command::new(TABBY)
        .arg("--datastore")
        .arg(url)
        .args(args)
        .env_remove("TABBY_LOG")
        .output()
        .expect("tabby runs")
}

fn ok(url: &str, args: &[&str]) -> (String, String) {
    let o = tabby(url, args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "tabby {args:?} on {url}: {stderr}");
    (stdout, stderr)
}

fn fails(url: &str, args: &[&str]) -> String {
    let o = tabby(url, args);
    assert!(!o.status.success(), "tabby {args:?} on {url} must fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The export's objects, without the header that names the datastore and revision.
fn objects(url: &str) -> String {
    let (text, _) = ok(url, &["datastore", "export"]);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A SQLite datastore with the examples, a pool, a node and one assigned address.
fn filled_sqlite(dir: &ScratchDir) -> String {
    let db = dir.file("source");
    let url = format!("sqlite:{}", db.display());
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    ok(&url, &["apply", "-f", &examples.display().to_string()]);
    let node = dir.path().join("node.yaml");
    std::fs::write(
        &node,
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1}\n",
    )
    .expect("write");
    ok(&url, &["apply", "-f", &node.display().to_string()]);
    let store = SqliteStore::open(&db).expect("open");
    let req = AssignRequest {
        handle: "h1".into(),
        node: "n1".into(),
        family: 4,
        ..AssignRequest::default()
    };
    Ipam::new(&store).auto_assign(&req).expect("assign");
    url
}

#[test]
fn migrate_copies_resources_and_ipam_state_to_etcd_and_verifies() {
    let dir = ScratchDir::new("ds-migrate");
    let sqlite = filled_sqlite(&dir);
    let etcd = EtcdFixture::start("ds-migrate", 1);
    let target = etcd.url("/prod");

    let (_, said) = ok(
        &sqlite,
        &["datastore", "migrate", "--from", &sqlite, "--to", &target],
    );
    assert!(said.contains("verified"), "{said}");
    let source_objects = objects(&sqlite);
    assert!(source_objects.contains("IPAMBlock"), "{source_objects}");
    assert!(source_objects.contains("IPAMHandle"), "{source_objects}");
    assert!(
        source_objects.contains("GlobalNetworkPolicy"),
        "{source_objects}"
    );
    assert_eq!(objects(&target), source_objects);
    // The copy is usable: the IPAM report and the policies read the same on both.
    let report = |url: &str| ok(url, &["ipam", "show", "-o", "json"]).0;
    assert_eq!(report(&target), report(&sqlite));
    let names = |url: &str| ok(url, &["get", "gnp"]).0;
    assert_eq!(names(&target), names(&sqlite));

    // A second run finds the target full and writes nothing; --overwrite goes through.
    let err = fails(
        &sqlite,
        &["datastore", "migrate", "--from", &sqlite, "--to", &target],
    );
    assert!(
        err.contains("already holds") && err.contains("--overwrite"),
        "{err}"
    );
    ok(
        &sqlite,
        &[
            "datastore",
            "migrate",
            "--from",
            &sqlite,
            "--to",
            &target,
            "--overwrite",
        ],
    );
    assert_eq!(objects(&target), source_objects);

    let err = fails(
        &sqlite,
        &[
            "datastore",
            "migrate",
            "--from",
            &sqlite,
            "--to",
            "etcd://127.0.0.1",
        ],
    );
    assert!(err.contains("has no port"), "{err}");
}

#[test]
fn export_and_import_round_trip_and_bad_exports_write_nothing() {
    let dir = ScratchDir::new("ds-export");
    let sqlite = filled_sqlite(&dir);
    let etcd = EtcdFixture::start("ds-export", 1);
    let file = dir.path().join("backup.yaml");
    let file_arg = file.display().to_string();

    ok(&sqlite, &["datastore", "export", "-o", &file_arg]);
    let restored = etcd.url("/restored");
    let (_, said) = ok(&restored, &["datastore", "import", "-f", &file_arg]);
    assert!(said.contains("verified"), "{said}");
    assert_eq!(objects(&restored), objects(&sqlite));

    // One bad document among good ones: every problem is listed, nothing is written.
    let text = std::fs::read_to_string(&file).expect("read");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        format!(
            "{text}---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: x}}\n---\napiVersion: tabby.dev/v1\nkind: DatastoreObject\nkey: {{kind: Tier}}\nvalue: {{}}\n"
        ),
    )
    .expect("write");
    let empty = etcd.url("/empty");
    let err = fails(
        &empty,
        &["datastore", "import", "-f", &broken.display().to_string()],
    );
    assert!(err.contains("not a DatastoreObject"), "{err}");
    assert!(err.contains("key.name"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(objects(&empty), "", "nothing was written");

    // Importing into a datastore that holds objects is refused.
    let err = fails(&restored, &["datastore", "import", "-f", &file_arg]);
    assert!(err.contains("already holds"), "{err}");
}

/// BGP passwords live in Secrets: one applies on SQLite and on etcd alike, `stringData` is
/// stored as base64 `data` (as the Kubernetes API server does), the table shows no value, and
/// a bad one is refused naming the field, without echoing the value and without writing.
#[test]
fn a_secret_applies_on_sqlite_and_etcd_and_get_shows_no_value() {
    let dir = ScratchDir::new("ds-secret");
    let etcd = EtcdFixture::start("ds-secret", 1);
    let sqlite = format!("sqlite:{}", dir.file("store").display());
    let good = dir.path().join("secret.yaml");
    std::fs::write(
        &good,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp-secrets, namespace: calico-system}\n\
         stringData: {tor: hunter2-pw}\n",
    )
    .expect("write");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: other, namespace: calico-system}\n\
         data: {tor: 'plain hunter3'}\n",
    )
    .expect("write");
    for url in [sqlite, etcd.url("/secret")] {
        ok(&url, &["apply", "-f", &good.display().to_string()]);
        let (table, _) = ok(&url, &["get", "secrets", "-n", "calico-system"]);
        assert!(
            table.contains("bgp-secrets") && table.contains("Opaque"),
            "{table}"
        );
        assert!(!table.contains("hunter2"), "{table}");
        let (yaml, _) = ok(
            &url,
            &[
                "get",
                "secret",
                "bgp-secrets",
                "-n",
                "calico-system",
                "-o",
                "yaml",
            ],
        );
        // base64 of "hunter2-pw", as kubectl shows it; the plain text is gone.
        assert!(yaml.contains("tor: aHVudGVyMi1wdw=="), "{yaml}");
        assert!(
            !yaml.contains("stringData") && !yaml.contains("hunter2"),
            "{yaml}"
        );

        let err = fails(&url, &["apply", "-f", &bad.display().to_string()]);
        assert!(
            err.contains("data.tor") && err.contains("not valid base64"),
            "{err}"
        );
        assert!(!err.contains("hunter3"), "{err}");
        let (all, _) = ok(&url, &["get", "secrets", "-A"]);
        assert!(!all.contains("other"), "{all}");
        // `get all` leaves Secrets out, as kubectl does.
        let (everything, _) = ok(&url, &["get", "all", "-A", "-o", "yaml"]);
        assert!(
            !everything.contains("bgp-secrets") && !everything.contains("aHVudGVyMi1wdw"),
            "{everything}"
        );
    }
}
