use super::*;
use crate::Resource;

fn load_str(text: &str) -> Result<Vec<Loaded>, LoadError> {
    load(text, "test.yaml", &LoadOptions::default())
}

fn issues(text: &str) -> Vec<String> {
    match load_str(text) {
        Err(LoadError::Invalid(issues)) => issues.iter().map(ToString::to_string).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

const GNP_BAD_RANGE: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-db
spec:
  selector: role == 'db'
  ingress:
    - action: Deny
      protocol: TCP
      destination:
        ports: [5432, "90:80"]
"#;

#[test]
fn errors_name_kind_name_field_path_and_reason() {
    assert_eq!(
        issues(GNP_BAD_RANGE),
        vec![
            "test.yaml: document 1: GlobalNetworkPolicy \"deny-db\": \
             spec.ingress[0].destination.ports[1]: range 90:80 is reversed"
        ]
    );
}

#[test]
fn unknown_fields_are_named() {
    let text = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSzie: 26}\n";
    let all = issues(text).join("\n");
    assert!(
        all.contains("IPPool \"p\": spec.blockSzie: unknown field `blockSzie`"),
        "{all}"
    );
}

#[test]
fn every_invalid_document_is_listed() {
    let text = format!(
        "{GNP_BAD_RANGE}---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: Bad_Name}}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: Widget\nmetadata: {{name: w}}\n"
    );
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        all[1].contains("document 2: Tier \"Bad_Name\": metadata.name"),
        "{}",
        all[1]
    );
    assert!(
        all[2].contains("document 3: kind: unknown kind \"Widget\""),
        "{}",
        all[2]
    );
}

#[test]
fn duplicate_objects_in_one_file_are_refused() {
    let one = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n";
    let all = issues(&format!("{one}---\n{one}"));
    assert_eq!(all.len(), 1);
    assert!(
        all[0].contains("document 2") && all[0].contains("already defined by document 1"),
        "{}",
        all[0]
    );
}

#[test]
fn lists_expand_and_namespaces_default() {
    let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod", "labels": {"team": "a"}}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
         "spec": {"podSelector": {}}}
    ]}"#;
    let loaded = load_str(text).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[1].resource.kind(), Kind::K8sNetworkPolicy);
    assert_eq!(loaded[1].resource.namespace(), "default");
    assert_eq!(loaded[1].document, 2);
}

#[test]
fn cluster_scoped_kinds_take_no_namespace() {
    let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g, namespace: x}\n";
    assert!(issues(text)[0].contains("metadata.namespace: GlobalNetworkPolicy is cluster-scoped"));
}

#[test]
fn explicit_namespace_must_match_documents() {
    let text = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: a, namespace: prod}\n";
    let opts = LoadOptions {
        default_namespace: "dev".into(),
        enforce_namespace: true,
        ..LoadOptions::default()
    };
    let Err(LoadError::Invalid(i)) = load(text, "f", &opts) else {
        panic!("expected invalid")
    };
    assert!(
        i[0].to_string()
            .contains("does not match the namespace \"dev\"")
    );
}

#[test]
fn calico_defaults_are_applied() {
    let text = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 'fd00::/48'}\n---\n\
                apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: np}\nspec:\n  egress: [{action: Allow}]\n";
    let loaded = load_str(text).unwrap();
    let Resource::IpPool(pool) = &loaded[0].resource else {
        panic!()
    };
    assert_eq!(pool.spec.block_size, Some(122));
    assert_eq!(pool.spec.node_selector.as_deref(), Some("all()"));
    let Resource::NetworkPolicy(np) = &loaded[1].resource else {
        panic!()
    };
    assert_eq!(np.spec.types, vec![crate::policy::PolicyType::Egress]);
    assert_eq!(np.spec.tier.as_deref(), Some("default"));
}

#[test]
fn invalid_selectors_report_their_position() {
    let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {selector: \"a == \"}\n";
    let all = issues(text).join("\n");
    assert!(
        all.contains("spec.selector: invalid selector \"a == \""),
        "{all}"
    );
    assert!(all.contains("position"), "{all}");
}

#[test]
fn syntax_errors_are_reported_with_the_file() {
    let e = load_str("a: [1,\n").unwrap_err();
    assert!(matches!(e, LoadError::Syntax { .. }));
    assert!(e.to_string().starts_with("test.yaml: line "), "{e}");
    assert!(
        load(r#"{"a": }"#, "x.json", &LoadOptions::default())
            .unwrap_err()
            .to_string()
            .starts_with("x.json: line 1")
    );
}

#[test]
fn kubectl_dumps_load_with_bookkeeping_kept() {
    let text = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: prod
  uid: 0f3c
  resourceVersion: "123"
  creationTimestamp: "2024-01-01T00:00:00Z"
  labels: {app: web}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web, uid: x}]
spec:
  nodeName: node-1
  containers:
    - name: web
      image: nginx
      ports: [{containerPort: 80, name: http, protocol: TCP}]
  dnsPolicy: ClusterFirst
status:
  podIP: 10.65.0.7
  phase: Running
"#;
    let loaded = load_str(text).unwrap();
    let v = loaded[0].resource.to_value();
    assert_eq!(v["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(v["spec"]["containers"][0]["image"], "nginx");
    assert_eq!(
        loaded[0].resource.pod_status().unwrap().pod_ip.as_deref(),
        Some("10.65.0.7")
    );
}

#[test]
fn resources_round_trip_through_values() {
    let loaded = load_str(GNP_BAD_RANGE.replace("90:80", "80:90").as_str()).unwrap();
    let v = loaded[0].resource.to_value();
    let again = load(&v.to_string(), "again.json", &LoadOptions::default()).unwrap();
    assert_eq!(again[0].resource, loaded[0].resource);
}

#[test]
fn felix_settings_without_effect_warn_and_unknown_ones_fail() {
    let ok = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {bpfEnabled: false, healthPort: 9099}\n";
    let loaded = load_str(ok).unwrap();
    assert_eq!(loaded[0].warnings.len(), 1);
    assert!(
        loaded[0].warnings[0]
            .to_string()
            .contains("spec.bpfEnabled: accepted, but tabby does not act")
    );
    let bad = ok.replace("bpfEnabled", "bpfEnabld");
    assert!(issues(&bad)[0].contains("spec.bpfEnabld: unknown field"));
}

#[test]
fn empty_files_are_an_error() {
    assert!(matches!(
        load_str("# nothing\n"),
        Err(LoadError::Empty { .. })
    ));
}

#[test]
fn global_is_refused_in_policy_selectors_but_not_in_rules() {
    let gnp = |sel: &str, rule_sel: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: g}}\n\
             spec:\n  selector: \"{sel}\"\n  ingress: [{{action: Allow, source: {{selector: \"{rule_sel}\"}}}}]\n"
        )
    };
    assert!(load_str(&gnp("all()", "global()")).is_ok());
    let all = issues(&gnp("global()", "all()")).join("\n");
    assert!(
        all.contains("spec.selector: global() is only allowed"),
        "{all}"
    );
}

#[test]
fn prefix_limit_annotations_are_checked_with_resource_annotation_and_reason() {
    let peer = |annotations: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\n\
             metadata: {{name: tor, annotations: {{{annotations}}}}}\n\
             spec: {{peerIP: 10.0.0.1, asNumber: 64512}}\n"
        )
    };
    let loaded = load_str(&peer("tabby.dev/max-prefixes: '1000'")).unwrap();
    let Resource::BgpPeer(o) = &loaded[0].resource else {
        panic!("{loaded:?}")
    };
    assert_eq!(
        crate::bgp::max_prefixes(&o.metadata.annotations, crate::bgp::ANNOTATION_MAX_PREFIXES),
        Ok(Some(1000))
    );
    for bad in ["'0'", "'-5'", "'+5'", "'1e3'", "lots", "'4294967296'", "''"] {
        let all = issues(&peer(&format!("tabby.dev/max-prefixes: {bad}"))).join("\n");
        assert!(
            all.contains("BGPPeer \"tor\": metadata.annotations[\"tabby.dev/max-prefixes\"]: \"")
                && all.contains("is not a positive integer"),
            "{bad}: {all}"
        );
    }
    // A misspelt tabby annotation would silently set no limit: refused.
    let all = issues(&peer("tabby.dev/max-prefix: '10'")).join("\n");
    assert!(
        all.contains("annotations[\"tabby.dev/max-prefix\"]: is not a tabby annotation")
            && all.contains("\"tabby.dev/max-prefixes\""),
        "{all}"
    );
    // Other domains' annotations are none of tabby's business.
    load_str(&peer("example.com/owner: netops")).unwrap();

    let config = |name: &str, v: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\n\
             metadata: {{name: {name}, annotations: {{tabby.dev/node-mesh-max-prefixes: {v}}}}}\n\
             spec: {{}}\n"
        )
    };
    assert!(
        load_str(&config("default", "'500'")).unwrap()[0]
            .warnings
            .is_empty()
    );
    let all = issues(&config("default", "none")).join("\n");
    assert!(
        all.contains("BGPConfiguration \"default\": metadata.annotations[\"tabby.dev/node-mesh-max-prefixes\"]: \"none\" is not a positive integer"),
        "{all}"
    );
    let warned = &load_str(&config("node.a", "'500'")).unwrap()[0].warnings;
    assert!(
        warned[0].to_string().contains("has no effect here"),
        "{warned:?}"
    );
}
