//! `tabby ipam show|check|release` against a SQLite datastore filled by `tabby apply` and the
//! IPAM library.

use std::path::Path;
use std::process::{Command, Output};

use tabby_ipam::{AssignRequest, Ipam};
use tabby_store::sqlite::SqliteStore;
use tabby_test_util::{ScratchDir, run_with_stdin};

const TABBY: &str = env!("CARGO_BIN_EXE_tabby");

fn tabby(db: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(TABBY);
    cmd.arg("--datastore")
        .arg(format!("sqlite:{}", db.display()))
        .args(args);
    run_with_stdin(cmd, stdin)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn show_check_and_release_agree() {
    let dir = ScratchDir::new("ipam-cli");
    let db = dir.file("store");
    let apply = tabby(
        &db,
        &["apply", "-f", "-"],
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pods}\nspec: {cidr: 10.77.0.0/24}\n---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1}\n",
    );
    assert!(apply.status.success(), "{}", text(&apply));
    let store = SqliteStore::open(&db).unwrap();
    let ipam = Ipam::new(&store);
    let mut req = AssignRequest {
        handle: "h1".into(),
        node: "n1".into(),
        family: 4,
        ..AssignRequest::default()
    };
    req.attrs
        .insert("workloadEndpoint".into(), "default/gone".into());
    let a = ipam.auto_assign(&req).unwrap();
    let ip = a.ip.to_string();

    let show = tabby(&db, &["ipam", "show", "--show-blocks"], "");
    assert!(show.status.success(), "{}", text(&show));
    let t = text(&show);
    assert!(t.contains("pods") && t.contains("10.77.0.0/24"), "{t}");
    assert!(t.contains(&a.block.to_string()) && t.contains("n1"), "{t}");

    let json = tabby(&db, &["ipam", "show", "-o", "json"], "");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["pools"][0]["in_use"], 1);

    let one = tabby(&db, &["ipam", "show", "--ip", &ip], "");
    let t = text(&one);
    assert!(t.contains("h1") && t.contains("default/gone"), "{t}");

    let check = tabby(&db, &["ipam", "check"], "");
    assert!(!check.status.success(), "a leak must fail the check");
    let t = text(&check);
    assert!(t.contains(&format!("leaked: {ip}")), "{t}");
    assert!(
        t.contains("workload endpoint default/gone does not exist"),
        "{t}"
    );

    let bad = tabby(
        &db,
        &["ipam", "release", "--ip", &ip, "--sequence", "999"],
        "",
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("reallocated since it was read"),
        "{}",
        text(&bad)
    );

    let rel = tabby(&db, &["ipam", "release", "--ip", &ip], "");
    assert!(rel.status.success(), "{}", text(&rel));
    assert!(text(&rel).contains("held by handle h1"));
    let again = tabby(&db, &["ipam", "release", "--ip", &ip], "");
    assert!(text(&again).contains("was not allocated"));

    let check = tabby(&db, &["ipam", "check"], "");
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("no problems found"));
}
