//! The `tabby` binary end to end, against a real SQLite datastore in a temporary folder.

use std::path::Path;
use std::process::{Command, Output};

use tabby_test_util::{ScratchDir, run_with_stdin};

struct Tabby {
    dir: ScratchDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Tabby {
    fn new() -> Self {
        Self {
            dir: ScratchDir::new("cli"),
        }
    }

    fn url(&self) -> String {
        format!("sqlite:{}", self.dir.path().join("tabby.db").display())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tabby"));
        cmd.args(args)
            .env("TABBY_DATASTORE", self.url())
            .env_remove("TABBY_LOG");
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        finish(self.command(args).output().expect("tabby must start"))
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        finish(run_with_stdin(self.command(args), stdin))
    }

    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "tabby {args:?} failed: {}", r.stderr);
        r.stdout
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("test file must be writable");
        p.display().to_string()
    }

    /// Everything stored, as YAML: used to prove that a failed command changed nothing.
    fn everything(&self) -> String {
        self.ok(&["get", "all", "-A", "-o", "yaml"])
    }
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .display()
        .to_string()
}

const TIER: &str = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n";

#[test]
fn examples_apply_cleanly_and_read_back_in_every_format() {
    let t = Tabby::new();
    let out = t.ok(&["apply", "-f", &examples()]);
    assert!(
        out.contains("GlobalNetworkPolicy \"deny-blocklist\" created"),
        "{out}"
    );
    assert!(
        out.contains("NetworkPolicy.networking.k8s.io \"shop/web-allow-ingress\" created"),
        "{out}"
    );
    let again = t.ok(&["apply", "-f", &examples()]);
    assert!(again.lines().all(|l| l.ends_with("unchanged")), "{again}");

    let table = t.ok(&["get", "gnp"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("deny-blocklist") && table.contains("security"),
        "{table}"
    );
    let wide = t.ok(&["get", "networkpolicies", "-A", "-o", "wide"]);
    assert!(
        wide.contains("NAMESPACE") && wide.contains("shop") && wide.contains("TYPES"),
        "{wide}"
    );
    assert!(
        t.ok(&["get", "np"]).is_empty(),
        "the default namespace has no policies"
    );
    let netpol = t.ok(&["get", "netpol", "-n", "shop", "-o", "name"]);
    assert_eq!(
        netpol,
        "networkpolicies.networking.k8s.io/web-allow-ingress\n"
    );

    let json = t.ok(&["get", "ippool", "default-ipv4-pool", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("get -o json must print JSON");
    assert_eq!(v["kind"], "IPPool");
    assert_eq!(v["spec"]["cidr"], "10.65.0.0/16");
    assert!(v["metadata"]["resourceVersion"].is_string());

    // YAML output can be applied as it is.
    let yaml = t.ok(&["get", "all", "-A", "-o", "yaml"]);
    let reapplied = t.run_stdin(&["apply", "-f", "-"], &yaml);
    assert_eq!(reapplied.code, 0, "{}", reapplied.stderr);
    assert!(
        reapplied.stdout.lines().all(|l| l.ends_with("unchanged")),
        "{}",
        reapplied.stdout
    );
}

#[test]
fn a_file_with_invalid_documents_writes_nothing_and_lists_every_error() {
    let t = Tabby::new();
    t.ok(&["apply", "-f", &t.file("tier.yaml", TIER)]);
    let before = t.everything();
    let bad = format!(
        "{}---\n{}---\n{}---\n{}",
        TIER.replace("order: 100", "order: 5"),
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-db}\n\
         spec:\n  ingress:\n    - action: Deny\n      protocol: TCP\n      destination: {ports: [5432, '90:80']}\n",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.1/16}\n",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: n}\nspec: {selector: \"a ==\"}\n",
    );
    let r = t.run(&["apply", "-f", &t.file("bad.yaml", &bad)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "document 2: GlobalNetworkPolicy \"deny-db\": spec.ingress[0].destination.ports[1]: range 90:80 is reversed"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("document 3: IPPool \"p\": spec.cidr: \"10.0.0.1/16\" has host bits set"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("document 4: NetworkPolicy \"default/n\": spec.selector: invalid selector"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("3 problems found; nothing was written"),
        "{}",
        r.stderr
    );
    assert_eq!(
        t.everything(),
        before,
        "the valid document must not have been applied either"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let t = Tabby::new();
    t.ok(&["apply", "-f", &t.file("tier.yaml", TIER)]);
    let before = t.everything();
    let cases: &[(&str, &str, &str)] = &[
        (
            "malformed.yaml",
            "kind: Tier\n  metadata: [\n",
            "malformed.yaml: line",
        ),
        (
            "malformed.json",
            "{\"kind\": \"Tier\",",
            "malformed.json: line 1",
        ),
        (
            "kind.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
            "unknown kind \"Deployment\"",
        ),
        (
            "field.yaml",
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {ordr: 1}\n",
            "spec.ordr: unknown field `ordr`",
        ),
        (
            "cidr.yaml",
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: [10.0.0.0/33]}\n",
            "spec.nets[0]: \"10.0.0.0/33\" is not a valid CIDR",
        ),
        (
            "dup.yaml",
            &format!("{TIER}---\n{TIER}"),
            "already defined by document 1",
        ),
        ("notamap.yaml", "- just\n- a list\n", "must be a mapping"),
        ("empty.yaml", "# nothing here\n", "no resources found"),
    ];
    for (name, text, expected) in cases {
        let r = t.run(&["apply", "-f", &t.file(name, text)]);
        assert_ne!(r.code, 0, "{name} must fail");
        assert!(
            r.stderr.contains(expected),
            "{name}: expected {expected:?} in:\n{}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{name}: {}", r.stderr);
    }
    let missing = t.run(&["apply", "-f", "/nonexistent/policy.yaml"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("cannot read /nonexistent/policy.yaml"),
        "{}",
        missing.stderr
    );
    let across = t.run(&[
        "apply",
        "-f",
        &t.file("a.yaml", TIER),
        "-f",
        &t.file("b.yaml", TIER),
    ]);
    assert!(
        across.stderr.contains("already defined in"),
        "{}",
        across.stderr
    );
    assert_eq!(t.everything(), before);
}

#[test]
fn a_datastore_that_is_not_ours_is_refused_untouched() {
    let t = Tabby::new();
    let path = t.dir.path().join("notes.txt");
    std::fs::write(&path, "my notes\n").unwrap();
    let r = Tabby::command(&t, &["get", "tiers"])
        .env("TABBY_DATASTORE", format!("sqlite:{}", path.display()))
        .output()
        .unwrap();
    let r = finish(r);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("is not a tabby datastore"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "my notes\n");
}

#[test]
fn unwritable_and_unbuilt_datastores_are_explained() {
    let t = Tabby::new();
    let r = finish(
        t.command(&["get", "tiers", "--datastore", "sqlite:/proc/tabby/tabby.db"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("/proc/tabby"), "{}", r.stderr);
    let r = finish(
        t.command(&["get", "tiers", "--datastore", "etcd://127.0.0.1:2379"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("etcd"), "{}", r.stderr);
    let r = finish(
        t.command(&["get", "tiers", "--datastore", "mysql://x"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("sqlite:"), "{}", r.stderr);
}

#[test]
fn create_replace_delete_and_label_follow_kubectl_semantics() {
    let t = Tabby::new();
    let tier = t.file("tier.yaml", TIER);
    assert!(t.ok(&["create", "-f", &tier]).contains("created"));
    let again = t.run(&["create", "-f", &tier]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("Tier \"security\" already exists"),
        "{}",
        again.stderr
    );

    // Replace refuses a stale resourceVersion.
    let current = t.ok(&["get", "tier", "security", "-o", "yaml"]);
    t.ok(&["label", "tier", "security", "owner=secops"]);
    let stale = t.run_stdin(
        &["replace", "-f", "-"],
        &current.replace("order: 100", "order: 7"),
    );
    assert_eq!(stale.code, 1);
    assert!(
        stale.stderr.contains("has changed since resourceVersion"),
        "{}",
        stale.stderr
    );
    let fresh = t.ok(&["get", "tier", "security", "-o", "yaml"]);
    t.run_stdin(
        &["replace", "-f", "-"],
        &fresh.replace("order: 100", "order: 7"),
    );
    assert!(t.ok(&["get", "tier", "security"]).contains('7'));

    let relabel = t.run(&["label", "tier", "security", "owner=other"]);
    assert!(
        relabel.stderr.contains("--overwrite") || relabel.stderr.contains("overwrite"),
        "{}",
        relabel.stderr
    );
    t.ok(&["label", "tier", "security", "owner=other", "--overwrite"]);
    t.ok(&["label", "tier", "security", "owner-"]);
    assert!(
        !t.ok(&["get", "tier", "security", "-o", "yaml"])
            .contains("owner")
    );
    let bad_label = t.run(&["label", "tier", "security", "bad key=x"]);
    assert_eq!(bad_label.code, 1);

    let gone = t.run(&["delete", "tier", "security", "ghost"]);
    assert_eq!(gone.code, 1);
    assert!(
        gone.stderr.contains("Tier \"ghost\" not found"),
        "{}",
        gone.stderr
    );
    assert!(
        t.ok(&["get", "tiers"]).contains("security"),
        "a failed delete must delete nothing"
    );
    t.ok(&["delete", "tiers", "security", "ghost", "--ignore-not-found"]);
    assert!(t.ok(&["get", "tiers"]).is_empty());

    t.ok(&["apply", "-f", &examples()]);
    t.ok(&["delete", "-f", &examples()]);
    assert!(t.everything().is_empty());
}

#[test]
fn namespace_flag_sets_and_guards_namespaces() {
    let t = Tabby::new();
    let np = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: a}\nspec: {selector: all()}\n";
    t.ok(&["apply", "-f", &t.file("np.yaml", np), "-n", "dev"]);
    assert!(t.ok(&["get", "np", "-n", "dev"]).contains('a'));
    let other = np.replace("{name: a}", "{name: b, namespace: prod}");
    let r = t.run(&["apply", "-f", &t.file("np2.yaml", &other), "-n", "dev"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("does not match the namespace \"dev\""),
        "{}",
        r.stderr
    );
    let missing = t.run(&["get", "np", "nope", "-n", "dev"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("NetworkPolicy \"dev/nope\" not found"),
        "{}",
        missing.stderr
    );
    let unknown = t.run(&["get", "widgets"]);
    assert!(
        unknown.stderr.contains("unknown kind \"widgets\""),
        "{}",
        unknown.stderr
    );
}

#[test]
fn selector_commands_print_canonical_form_id_and_matches() {
    let t = Tabby::new();
    let text = t.ok(&["selector", "parse", ""]);
    assert_eq!(text, "all()\ns:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug\n");
    let json = t.ok(&["selector", "parse", "! (has( b)||! has(a ))", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["canonical"], "!(has(b) || !has(a))");
    assert_eq!(v["id"], "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q");
    let bad = t.run(&["selector", "parse", "a == 'b' &&"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stdout.is_empty());
    assert!(bad.stderr.contains("position"), "{}", bad.stderr);
    assert_eq!(
        t.ok(&["selector", "match", "a == 'b'", "--labels", r#"{"a":"b"}"#]),
        "true\n"
    );
    assert_eq!(
        t.ok(&["selector", "match", "a != 'b'", "--labels", r#"{}"#]),
        "true\n"
    );
    assert_eq!(
        t.ok(&["selector", "match", "has(x)", "--labels", r#"{"a":"b"}"#]),
        "false\n"
    );
    let bad_labels = t.run(&["selector", "match", "has(x)", "--labels", "[1]"]);
    assert_eq!(bad_labels.code, 1);
    assert!(
        bad_labels.stderr.contains("JSON object"),
        "{}",
        bad_labels.stderr
    );
}

#[test]
fn every_command_has_help_with_examples() {
    let t = Tabby::new();
    for cmd in [
        vec!["--help"],
        vec!["apply", "--help"],
        vec!["create", "--help"],
        vec!["replace", "--help"],
        vec!["delete", "--help"],
        vec!["get", "--help"],
        vec!["label", "--help"],
        vec!["selector", "parse", "--help"],
        vec!["selector", "match", "--help"],
        vec!["policy", "matrix", "--help"],
        vec!["policy", "explain", "--help"],
    ] {
        let out = t.ok(&cmd);
        assert!(
            out.contains("Example"),
            "{cmd:?} --help has no examples:\n{out}"
        );
    }
}

const SHOP: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: shop}}
- apiVersion: v1
  kind: Pod
  metadata: {name: web, namespace: shop, labels: {app: web}}
  spec: {containers: [{name: c}]}
  status: {podIP: 10.65.0.10}
- apiVersion: v1
  kind: Pod
  metadata: {name: db, namespace: shop, labels: {app: db}}
  spec: {containers: [{name: c}]}
  status: {podIP: 10.65.0.20}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: db-only-from-web, namespace: shop}
  spec:
    podSelector: {matchLabels: {app: db}}
    ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
"#;

#[test]
fn policy_matrix_and_explain_from_a_file_and_from_the_datastore() {
    let t = Tabby::new();
    let file = t.file("shop.yaml", SHOP);
    let json = t.ok(&[
        "policy", "matrix", "-f", &file, "--port", "5432", "-o", "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["pods"], serde_json::json!(["shop/db", "shop/web"]));
    assert_eq!(v["allowed"]["shop/web"]["shop/db"], true);
    assert_eq!(v["allowed"]["shop/db"]["shop/db"], false);
    assert_eq!(v["allowed"]["shop/db"]["shop/web"], true);
    let table = t.ok(&["policy", "matrix", "-f", &file, "--port", "80"]);
    assert!(table.contains("TCP/80") && table.contains('X'), "{table}");

    let why = t.ok(&[
        "policy", "explain", "shop/web", "shop/db", "--port", "80", "-f", &file,
    ]);
    assert!(
        why.starts_with("shop/web -> shop/db TCP/80: DENIED"),
        "{why}"
    );
    assert!(
        why.contains("tier \"default\"") && why.contains("db-only-from-web"),
        "{why}"
    );

    // The same state from the datastore.
    t.ok(&["apply", "-f", &file]);
    let from_store = t.ok(&["policy", "matrix", "--port", "5432", "-o", "json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&from_store).unwrap(),
        v
    );

    let unknown = t.run(&["policy", "explain", "shop/wbe", "shop/db", "-f", &file]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("unknown pod \"shop/wbe\""),
        "{}",
        unknown.stderr
    );
    let bad_proto = t.run(&["policy", "matrix", "-f", &file, "--protocol", "TPC"]);
    assert_eq!(bad_proto.code, 1);
    assert!(
        bad_proto.stderr.contains("unknown protocol"),
        "{}",
        bad_proto.stderr
    );
}
