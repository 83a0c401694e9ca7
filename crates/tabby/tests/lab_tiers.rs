//! Tiers, order, Pass and tier default actions with real traffic across three hosts: each
//! scenario is loaded into a lab, the cells it is about are checked against what Calico's
//! semantics say, and `tabby lab verify` checks every other pair against `tabby policy matrix`.
//!
//! Needs root. Without it the test says it was skipped; under `CI=true` that is a failure.

#[path = "support/lab.rs"]
mod lab;

use crate::lab::TestLab;

const PODS: &str = r"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: o}}
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata: {name: tiers}
  spec: {cidr: 10.79.0.0/24}
- {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: o, labels: {app: a}}, spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}}
- {apiVersion: v1, kind: Pod, metadata: {name: b, namespace: o, labels: {app: b}}, spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 80}]}]}}
- {apiVersion: v1, kind: Pod, metadata: {name: c, namespace: o, labels: {app: c}}, spec: {nodeName: node-3, containers: [{name: c, ports: [{containerPort: 80}]}]}}
- {apiVersion: v1, kind: Pod, metadata: {name: d, namespace: o, labels: {app: d}}, spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}}
- apiVersion: projectcalico.org/v3
  kind: Tier
  metadata: {name: t1}
  spec: {order: 10}
- apiVersion: projectcalico.org/v3
  kind: Tier
  metadata: {name: t2}
  spec: {order: 20}
- apiVersion: projectcalico.org/v3
  kind: Tier
  metadata: {name: t3}
  spec: {order: 30, defaultAction: Pass}
";

fn gnp(name: &str, tier: &str, order: u32, selector: &str, types: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {tier}.{name}}}\nspec:\n  tier: {tier}\n  order: {order}\n  selector: {selector}\n  types: [{types}]\n{rules}"
    )
}

/// `(from, to, allowed)` cells a scenario is about.
type Cells = &'static [(&'static str, &'static str, bool)];

fn check(lab: &TestLab, name: &str, policies: &str, cells: Cells) {
    lab.load(&format!("{PODS}{policies}"), true);
    let m = lab.matrix(80, "TCP");
    for (from, to, want) in cells {
        assert_eq!(
            m["allowed"][format!("o/{from}")][format!("o/{to}")],
            *want,
            "{name}: o/{from} -> o/{to} should be {}\n{m}",
            if *want { "allowed" } else { "denied" }
        );
    }
    let verify = lab.ok(&["verify", "--port", "80"], "");
    assert!(
        verify.contains("agrees with `tabby policy matrix` on every pair"),
        "{name}: {verify}"
    );
}

#[test]
fn tiers_order_pass_and_default_actions_hold_on_real_traffic() {
    if !tabby_test_util::root_or_skip("tiers_order_pass_and_default_actions_hold_on_real_traffic") {
        return;
    }
    let lab = TestLab::up("ti", 3);
    lab.load(PODS, false);
    // The fabric, three hosts and four workloads.
    assert_eq!(lab.namespaces().len(), 8, "{:?}", lab.namespaces());
    assert_eq!(
        lab.state()["workloads"].as_object().map(|w| w.len()),
        Some(4)
    );

    // Within a tier the lower order decides first; a policy that selects the endpoint makes
    // the tier end in a deny for what no rule matched.
    let order = gnp(
        "first",
        "t1",
        10,
        "app == 'b'",
        "Ingress",
        "  ingress: [{action: Deny, source: {selector: app == 'a'}}]\n",
    ) + &gnp(
        "second",
        "t1",
        20,
        "app == 'b'",
        "Ingress",
        "  ingress: [{action: Allow, source: {selector: \"app in {'a', 'c'}\"}}]\n",
    );
    check(
        &lab,
        "order",
        &order,
        &[
            ("a", "b", false),
            ("c", "b", true),
            ("d", "b", false),
            ("a", "c", true),
        ],
    );

    // Pass hands the decision to the next tier; a rule-less end of tier denies.
    let pass = gnp(
        "gate",
        "t1",
        10,
        "app == 'c'",
        "Ingress",
        "  ingress: [{action: Pass, source: {selector: app == 'a'}}, {action: Deny, source: {selector: app == 'd'}}]\n",
    ) + &gnp(
        "open",
        "t2",
        10,
        "app == 'c'",
        "Ingress",
        "  ingress: [{action: Allow, source: {selector: app == 'a'}}]\n",
    );
    check(
        &lab,
        "pass",
        &pass,
        &[("a", "c", true), ("d", "c", false), ("b", "c", false)],
    );

    // An earlier tier's egress deny wins over a later tier's ingress allow.
    let egress = pass.clone()
        + &gnp(
            "no-c",
            "t1",
            5,
            "app == 'a'",
            "Egress",
            "  egress: [{action: Deny, destination: {selector: app == 'c'}}, {action: Pass}]\n",
        );
    check(
        &lab,
        "egress",
        &egress,
        &[("a", "c", false), ("a", "b", true), ("a", "d", true)],
    );

    // A tier whose default action is Pass lets what its policies did not match fall through
    // to the next tier (here none selects d, so the namespace profile allows it).
    let default_pass = gnp(
        "only-a",
        "t3",
        10,
        "app == 'd'",
        "Ingress",
        "  ingress: [{action: Allow, source: {selector: app == 'a'}}]\n",
    );
    check(
        &lab,
        "default-pass",
        &default_pass,
        &[("a", "d", true), ("b", "d", true), ("c", "d", true)],
    );

    // The same with the default tier's Kubernetes policy after it: only b may reach d.
    let then_k8s = default_pass.clone()
        + "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: d-from-b, namespace: o}\nspec:\n  podSelector: {matchLabels: {app: d}}\n  policyTypes: [Ingress]\n  ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]\n";
    check(
        &lab,
        "default-pass-then-k8s",
        &then_k8s,
        &[("a", "d", true), ("b", "d", true), ("c", "d", false)],
    );
}
