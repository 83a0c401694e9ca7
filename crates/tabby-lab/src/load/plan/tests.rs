use std::net::Ipv4Addr;
use std::path::PathBuf;

use tabby_model::LoadOptions;

use super::*;
use crate::state::NodeState;

fn lab(nodes: usize) -> LabState {
    LabState {
        name: "t".to_owned(),
        datastore: "sqlite:/nowhere".to_owned(),
        datastore_netns: None,
        fabric_netns: "tabby-lab-t.fabric".to_owned(),
        gateway: Ipv4Addr::new(172, 30, 0, 1),
        routing: crate::Routing::Datastore,
        route_reflectors: 0,
        tor: None,
        nodes: (1..=nodes)
            .map(|i| NodeState {
                name: format!("node-{i}"),
                netns: format!("tabby-lab-t.node-{i}"),
                address: Ipv4Addr::new(172, 30, 0, 10 + i as u8),
                address_v6: None,
                agent_pid: 0,
                log: PathBuf::new(),
            })
            .collect(),
        workloads: BTreeMap::new(),
        loaded: BTreeSet::new(),
    }
}

fn resources(yaml: &str) -> Vec<Resource> {
    tabby_model::load(
        yaml,
        "test",
        &LoadOptions {
            default_namespace: "default".to_owned(),
            enforce_namespace: false,
            apply_defaults: true,
        },
    )
    .expect("test input loads")
    .into_iter()
    .map(|l| l.resource)
    .collect()
}

fn pod(name: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x}}\nspec:\n  containers: [{{name: c, ports: [{{containerPort: 80}}, {{containerPort: 81, protocol: UDP}}]}}]\n{extra}"
    )
}

const POOL: &str = "---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.9.0.0/24}\n";

fn run(state: &LabState, yaml: &str) -> Result<Plan, Vec<String>> {
    let input = resources(yaml);
    let pools = pools(&input, &[]);
    plan(state, input, &pools)
}

#[test]
fn pods_without_a_node_go_round_robin_and_leave_their_addresses_to_the_ipam() {
    let yaml = format!(
        "{POOL}{}{}{}{}",
        pod("a", ""),
        pod("b", ""),
        pod("c", "status: {podIP: 10.9.0.7}\n"),
        pod("d", "")
    );
    let plan = run(&lab(3), &yaml).expect("plans");
    let placed: Vec<(String, String, Vec<String>)> = plan
        .workloads
        .values()
        .map(|w| {
            (
                w.key(),
                w.node.clone(),
                w.addresses.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [
            ("x/a".into(), "node-1".into(), vec![]),
            ("x/b".into(), "node-2".into(), vec![]),
            ("x/c".into(), "node-3".into(), vec!["10.9.0.7".into()]),
            ("x/d".into(), "node-1".into(), vec![]),
        ]
    );
    let a = &plan.workloads["x/a"];
    assert_eq!(a.interface, workload_interface_name("x", "a"));
    assert_eq!(a.netns, format!("tabby-lab-t.{}", a.interface));
    assert_eq!(
        a.ports,
        [
            ServePort {
                protocol: ProbeProtocol::Tcp,
                port: 80
            },
            ServePort {
                protocol: ProbeProtocol::Udp,
                port: 81
            },
        ]
    );
    // The stored pod says where it runs; its address is its CNI ADD's to record (a requested
    // one too: it is the ADD's request, not yet the pod's).
    let pod_of = |name: &str| match plan.resources.iter().find(|r| r.name() == name) {
        Some(Resource::Pod(p)) => p.clone(),
        _ => panic!("pod {name} is written"),
    };
    assert_eq!(pod_of("a").spec.node_name.as_deref(), Some("node-1"));
    assert!(pod_of("a").status.is_none());
    assert!(pod_of("c").status.is_none());
}

#[test]
fn a_loaded_workload_keeps_its_node_address_and_record() {
    let mut state = lab(2);
    let first = run(&state, &format!("{POOL}{}", pod("a", ""))).expect("plans");
    state.workloads = first.workloads;
    let a = state.workloads.get_mut("x/a").unwrap();
    a.node = "node-2".to_owned();
    a.addresses = vec!["10.9.0.64".parse().unwrap()];
    let again = run(&state, &format!("{POOL}{}{}", pod("z", ""), pod("a", ""))).expect("plans");
    let a = &again.workloads["x/a"];
    assert_eq!(
        (a.node.as_str(), a.addresses[0].to_string().as_str()),
        ("node-2", "10.9.0.64")
    );
    assert!(again.workloads["x/z"].addresses.is_empty());
    let Some(Resource::Pod(p)) = again.resources.iter().find(|r| r.name() == "a") else {
        panic!("pod a is written");
    };
    assert_eq!(p.status.as_ref().unwrap()["podIP"], "10.9.0.64");
    assert_eq!(
        p.metadata.annotations[ANNOTATION_CONTAINER_ID],
        format!("lab-t-{}", a.interface)
    );
    assert_eq!(p.metadata.annotations[ANNOTATION_POD_IPS], "10.9.0.64/32");
    // Moved to another node, it is remade and the IPAM gives it a new address there.
    let moved = run(
        &state,
        &format!("{POOL}{}", pod("a", "  nodeName: node-1\n")),
    )
    .expect("plans");
    assert!(moved.workloads["x/a"].addresses.is_empty());
}

#[test]
fn every_problem_is_named_and_nothing_is_planned() {
    let yaml = format!(
        "{POOL}{}{}{}",
        pod("a", "  nodeName: node-9\n"),
        pod("b", "status: {podIP: 10.77.0.1}\n"),
        pod("c", "status: {podIP: 10.9.0.5}\n"),
    ) + &pod("d", "status: {podIP: 10.9.0.5}\n");
    let errors = run(&lab(2), &yaml).unwrap_err();
    let text = errors.join("\n");
    assert!(
        text.contains("Pod \"x/a\": spec.nodeName: \"node-9\" is not a node of lab \"t\""),
        "{text}"
    );
    assert!(
        text.contains("status.podIP: 10.77.0.1 is in no IP pool"),
        "{text}"
    );
    assert!(
        text.contains("address 10.9.0.5 is given to another workload too"),
        "{text}"
    );
    assert_eq!(errors.len(), 3, "{text}");
}

#[test]
fn unsupported_ports_and_host_network_pods_are_warnings() {
    let yaml = format!(
        "{POOL}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: s, namespace: x}}\nspec:\n  containers: [{{name: c, ports: [{{containerPort: 80, protocol: SCTP}}]}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: h, namespace: x}}\nspec: {{hostNetwork: true, containers: [{{name: c}}]}}\n"
    );
    let plan = run(&lab(1), &yaml).expect("plans");
    assert_eq!(plan.workloads.len(), 1);
    assert!(plan.workloads["x/s"].ports.is_empty());
    let text = plan.warnings.join("\n");
    assert!(text.contains("SCTP/80 is not served"), "{text}");
    assert!(text.contains("spec.hostNetwork is true"), "{text}");
}

#[test]
fn workload_endpoints_are_plumbed_as_given() {
    let yaml = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: n1-k8s-w-eth0, namespace: x}\nspec: {node: node-1, pod: w, interfaceName: tbw, ipNetworks: [10.1.2.3/32], ports: [{name: http, port: 8080, protocol: TCP}]}\n";
    let plan = run(&lab(1), yaml).expect("plans");
    let w = &plan.workloads["x/w"];
    assert_eq!(
        (w.interface.as_str(), w.addresses[0].to_string().as_str()),
        ("tbw", "10.1.2.3")
    );
    assert_eq!(w.kind, WorkloadKind::WorkloadEndpoint);
    let bad = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: e, namespace: x}\nspec: {node: node-1, interfaceName: tbe, ipNetworks: [10.1.2.0/24]}\n";
    let errors = run(&lab(1), bad).unwrap_err().join("\n");
    assert!(errors.contains("spec.ipNetworks[0]"), "{errors}");
}

#[test]
fn the_files_pools_come_before_the_datastores() {
    let stored = resources(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: a-default}\nspec: {cidr: 192.168.0.0/16}\n",
    );
    let input = resources(&format!("{POOL}{}", pod("a", "")));
    let pools = pools(&input, &stored);
    assert_eq!(
        pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["p", "a-default"]
    );
    plan(&lab(1), input, &pools).expect("plans");
    let errors = plan(&lab(1), resources(&pod("b", "")), &[]).unwrap_err();
    assert!(
        errors[0].contains("Pod \"x/b\": no enabled IPv4 pool"),
        "{errors:?}"
    );
}
