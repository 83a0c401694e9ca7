//! The plugin's logic over a real SQLite datastore and in-memory plumbing; the kernel side is
//! tested for real in the binary's podman tests.

use std::path::PathBuf;

use serde_json::{Value, json};
use tabby_store::sqlite::SqliteStore;
use tabby_test_util::ScratchDir;

use super::*;
use crate::plumbing::FakePlumbing;
use crate::protocol::dispatch;

struct Fixture {
    _dir: ScratchDir,
    url: String,
    plumbing: FakePlumbing,
    netns: PathBuf,
}

impl Fixture {
    fn new(pool_yaml: &str) -> Self {
        let dir = ScratchDir::new("cni-plugin");
        let db = dir.file("store");
        let store = SqliteStore::open(&db).unwrap();
        let yaml = format!(
            "{pool_yaml}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: shop, labels: {{app: web}}}}\nspec: {{serviceAccountName: api, containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}]}}]}}\n"
        );
        for doc in tabby_model::load(&yaml, "t", &tabby_model::LoadOptions::default()).unwrap() {
            let mut r = doc.resource;
            r.apply_defaults();
            let s = stored::encode(&r);
            store
                .create(&Key::new(s.kind, s.namespace, s.name), &s.json)
                .unwrap();
        }
        let netns = PathBuf::from("/run/netns/fake-1");
        let plumbing = FakePlumbing::default();
        plumbing.namespaces.lock().unwrap().push(netns.clone());
        Self {
            url: format!("sqlite:{}", db.display()),
            _dir: dir,
            plumbing,
            netns,
        }
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(self.url.strip_prefix("sqlite:").unwrap()).unwrap()
    }

    fn run(&self, mode: Mode, command: &str, cid: &str, args: &str, conf: &Value) -> (bool, Value) {
        let open = |url: &str| -> Result<Box<dyn Datastore>, StoreError> {
            match url.strip_prefix("sqlite:") {
                Some(p) => Ok(Box::new(SqliteStore::open(p)?)),
                None => Err(StoreError::InvalidUrl {
                    url: url.to_owned(),
                    reason: "test opener".to_owned(),
                }),
            }
        };
        let plugin = TabbyPlugin {
            mode,
            open_store: &open,
            default_datastore: self.url.clone(),
            hostname: "node-1".to_owned(),
            plumbing: &self.plumbing,
        };
        let netns = self.netns.display().to_string();
        let env = |k: &str| -> Option<String> {
            Some(match k {
                "CNI_COMMAND" => command.to_owned(),
                "CNI_CONTAINERID" => cid.to_owned(),
                "CNI_NETNS" => netns.clone(),
                "CNI_IFNAME" => "eth0".to_owned(),
                "CNI_PATH" => "/usr/lib/cni".to_owned(),
                "CNI_ARGS" => args.to_owned(),
                _ => return None,
            })
        };
        let out = dispatch(&env, Ok(conf.to_string().into_bytes()), &plugin);
        let v = if out.stdout.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&out.stdout).unwrap()
        };
        (out.success, v)
    }

    fn in_use(&self) -> usize {
        let store = self.store();
        Ipam::new(&store)
            .usage()
            .unwrap()
            .pools
            .iter()
            .map(|p| p.in_use)
            .sum()
    }
}

fn conf(version: &str) -> Value {
    json!({"cniVersion": version, "name": "k8s-pod-network", "type": "tabby",
           "ipam": {"type": "tabby-ipam"}})
}

const POOL: &str = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pods}\nspec: {cidr: 10.88.0.0/24}\n";
const POD: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web";

fn pod(store: &SqliteStore) -> tabby_model::Object<tabby_model::k8s::PodSpec> {
    let e = store
        .get(&Key::new("Pod", "shop", "web"))
        .unwrap()
        .expect("pod");
    let Resource::Pod(p) = stored::decode(&e.key.kind, &e.value, e.mod_revision).unwrap() else {
        panic!("not a pod");
    };
    p
}

#[test]
fn add_records_a_held_pod_on_the_pod_and_del_twice_removes_everything() {
    let f = Fixture::new(POOL);
    let (ok, r) = f.run(Mode::Network, "ADD", "c1", POD, &conf("1.0.0"));
    assert!(ok, "{r}");
    assert_eq!(r["cniVersion"], "1.0.0");
    let address = r["ips"][0]["address"].as_str().unwrap();
    assert!(
        address.starts_with("10.88.0.") && address.ends_with("/32"),
        "{r}"
    );
    assert_eq!(r["ips"][0]["interface"], 1);
    assert_eq!(r["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(r["interfaces"][1]["sandbox"], "/run/netns/fake-1");
    assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");

    // The Pod speaks for the pod (Calico's Kubernetes-datastore way): it gets the addresses,
    // the container and the node; no WorkloadEndpoint describes it a second time.
    let store = f.store();
    let p = pod(&store);
    assert_eq!(p.metadata.annotations[ANNOTATION_CONTAINER_ID], "c1");
    assert_eq!(p.metadata.annotations[ANNOTATION_POD_IP], address);
    assert_eq!(p.metadata.annotations[ANNOTATION_POD_IPS], address);
    assert_eq!(p.spec.node_name.as_deref(), Some("node-1"));
    let status = Resource::Pod(p.clone()).pod_status().unwrap();
    assert_eq!(
        status.pod_ip.as_deref(),
        Some(address.trim_end_matches("/32"))
    );
    assert_eq!(p.metadata.labels["app"], "web", "labels untouched");
    assert!(
        store
            .list(Some("WorkloadEndpoint"), None)
            .unwrap()
            .entries
            .is_empty()
    );
    let interface = tabby_model::node::workload_interface_name("shop", "web");
    assert!(f.plumbing.links.lock().unwrap().contains_key(&interface));
    // (No Node resource here, so the block shows as orphaned; that is all.)
    let check = Ipam::new(&store).check().unwrap();
    assert!(
        check.leaked.is_empty() && check.conflicts.is_empty(),
        "{check:?}"
    );
    assert_eq!(check.endpoints, 1);

    let (ok, r) = f.run(Mode::Network, "CHECK", "c1", POD, &conf("1.0.0"));
    assert!(ok, "{r}");
    // Another container's DEL leaves the Pod's record alone.
    let (ok, r) = f.run(Mode::Network, "DEL", "c0", POD, &conf("1.0.0"));
    assert!(ok, "{r}");
    assert_eq!(
        pod(&store).metadata.annotations[ANNOTATION_CONTAINER_ID],
        "c1"
    );

    for _ in 0..2 {
        let (ok, r) = f.run(Mode::Network, "DEL", "c1", POD, &conf("1.0.0"));
        assert!(ok, "{r}");
        assert_eq!(r, Value::Null, "DEL prints nothing");
    }
    let p = pod(&store);
    assert!(p.metadata.annotations.is_empty(), "{p:?}");
    assert!(
        Resource::Pod(p)
            .pod_status()
            .is_none_or(|s| s.pod_ip.is_none())
    );
    assert_eq!(f.in_use(), 0);
    assert!(f.plumbing.links.lock().unwrap().is_empty());
    let (ok, r) = f.run(Mode::Network, "CHECK", "c1", POD, &conf("1.0.0"));
    assert!(!ok, "CHECK after DEL must fail: {r}");
}

#[test]
fn a_pod_the_datastore_lacks_gets_a_workload_endpoint() {
    let f = Fixture::new(POOL);
    let args = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=api";
    let (ok, r) = f.run(Mode::Network, "ADD", "c2", args, &conf("1.0.0"));
    assert!(ok, "{r}");
    let address = r["ips"][0]["address"].as_str().unwrap();
    let store = f.store();
    let key = Key::new("WorkloadEndpoint", "shop", "api");
    let e = store.get(&key).unwrap().expect("endpoint written");
    let Resource::WorkloadEndpoint(w) = stored::decode(&e.key.kind, &e.value, 1).unwrap() else {
        panic!("not an endpoint");
    };
    assert_eq!(w.spec.node, "node-1");
    assert_eq!(w.spec.orchestrator.as_deref(), Some("k8s"));
    assert_eq!(w.spec.profiles, vec!["kns.shop", "ksa.shop.default"]);
    assert_eq!(w.spec.ip_networks, vec![address.to_owned()]);
    assert_eq!(
        w.spec.interface_name,
        tabby_model::node::workload_interface_name("shop", "api")
    );
    assert!(pod(&store).metadata.annotations.is_empty());
    let check = Ipam::new(&store).check().unwrap();
    assert!(
        check.leaked.is_empty() && check.conflicts.is_empty(),
        "{check:?}"
    );
    let (ok, r) = f.run(Mode::Network, "CHECK", "c2", args, &conf("1.0.0"));
    assert!(ok, "{r}");
    let (ok, r) = f.run(Mode::Network, "DEL", "c2", args, &conf("1.0.0"));
    assert!(ok, "{r}");
    assert!(store.get(&key).unwrap().is_none());
    assert_eq!(f.in_use(), 0);
}

#[test]
fn bad_inputs_get_their_codes_and_leave_nothing_behind() {
    let f = Fixture::new(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: tiny}\nspec: {cidr: 10.89.0.0/31, blockSize: 31}\n",
    );
    let code_of = |(ok, v): (bool, Value)| {
        assert!(!ok, "{v}");
        assert!(!v["msg"].as_str().unwrap().is_empty());
        v["code"].as_u64().unwrap()
    };
    // A netns that does not exist.
    f.plumbing.namespaces.lock().unwrap().clear();
    let gone = f.run(Mode::Network, "ADD", "c0", POD, &conf("1.0.0"));
    f.plumbing.namespaces.lock().unwrap().push(f.netns.clone());
    assert!(
        gone.1["msg"].as_str().unwrap().contains("does not exist"),
        "{}",
        gone.1
    );
    assert_eq!(code_of(gone), 3);
    // A kernel failure: the addresses are given back.
    *f.plumbing.fail_add.lock().unwrap() = Some("no veth for you".into());
    assert_eq!(
        code_of(f.run(Mode::Network, "ADD", "c1", POD, &conf("1.0.0"))),
        102
    );
    *f.plumbing.fail_add.lock().unwrap() = None;
    assert_eq!(f.in_use(), 0);
    // An address outside every pool, and one already taken.
    let a = |cid: &str, ip: &str| {
        f.run(
            Mode::Network,
            "ADD",
            cid,
            &format!("K8S_POD_NAME={cid};IP={ip}"),
            &conf("1.0.0"),
        )
    };
    assert_eq!(code_of(a("c2", "192.0.2.1")), 101);
    assert!(a("c3", "10.89.0.1").0);
    assert_eq!(code_of(a("c4", "10.89.0.1")), 101);
    // The pool runs out.
    assert!(
        f.run(
            Mode::Network,
            "ADD",
            "c5",
            "K8S_POD_NAME=c5",
            &conf("1.0.0")
        )
        .0
    );
    assert_eq!(
        code_of(f.run(
            Mode::Network,
            "ADD",
            "c6",
            "K8S_POD_NAME=c6",
            &conf("1.0.0")
        )),
        100
    );
    assert_eq!(f.in_use(), 2);
    // Configuration problems.
    let mut c = conf("1.0.0");
    c["ipam"]["type"] = json!("host-local");
    assert_eq!(code_of(f.run(Mode::Network, "ADD", "c7", POD, &c)), 2);
    c = conf("1.0.0");
    c["mtu"] = json!("big");
    assert_eq!(code_of(f.run(Mode::Network, "ADD", "c7", POD, &c)), 7);
    c = conf("1.0.0");
    c["datastore"] = json!("nope://x");
    assert_eq!(code_of(f.run(Mode::Network, "ADD", "c7", POD, &c)), 11);
    assert_eq!(
        code_of(f.run(Mode::Network, "ADD", "c7", POD, &conf("9.9.9"))),
        1
    );
    assert_eq!(f.in_use(), 2);
    let store = f.store();
    let weps = store.list(Some("WorkloadEndpoint"), None).unwrap();
    assert_eq!(
        weps.entries.len(),
        2,
        "only the two successful ADDs wrote endpoints"
    );
}

#[test]
fn the_ipam_plugin_returns_block_prefixed_addresses_and_releases_them() {
    let f = Fixture::new(POOL);
    let (ok, r) = f.run(Mode::Ipam, "ADD", "c1", "", &conf("0.4.0"));
    assert!(ok, "{r}");
    assert!(r.get("interfaces").is_none());
    assert_eq!(r["ips"][0]["version"], "4");
    assert!(
        r["ips"][0]["address"].as_str().unwrap().ends_with("/26"),
        "{r}"
    );
    assert_eq!(f.in_use(), 1);
    assert!(f.run(Mode::Ipam, "DEL", "c1", "", &conf("0.4.0")).0);
    assert_eq!(f.in_use(), 0);
}

#[test]
fn gc_releases_what_is_not_valid_and_status_reports_pools() {
    let f = Fixture::new(POOL);
    for cid in ["keep", "drop"] {
        let (ok, r) = f.run(
            Mode::Network,
            "ADD",
            cid,
            &format!("K8S_POD_NAME={cid}"),
            &conf("1.1.0"),
        );
        assert!(ok, "{r}");
    }
    let mut c = conf("1.1.0");
    c["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let (ok, r) = f.run(Mode::Network, "GC", "", "", &c);
    assert!(ok, "{r}");
    assert_eq!(f.in_use(), 1);
    let store = f.store();
    assert!(
        store
            .get(&Key::new("WorkloadEndpoint", "default", "keep"))
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get(&Key::new("WorkloadEndpoint", "default", "drop"))
            .unwrap()
            .is_none()
    );
    assert_eq!(f.plumbing.links.lock().unwrap().len(), 1);

    assert!(f.run(Mode::Network, "STATUS", "", "", &conf("1.1.0")).0);
    let (ok, r) = f.run(Mode::Network, "STATUS", "", "", &conf("1.0.0"));
    assert!(!ok && r["code"] == 1, "{r}");
    let empty = Fixture::new("");
    let (ok, r) = empty.run(Mode::Network, "STATUS", "", "", &conf("1.1.0"));
    assert!(!ok && r["code"] == 50, "{r}");
}

#[test]
fn an_add_and_a_del_are_one_commit_each() {
    let f = Fixture::new(POOL);
    let store = f.store();
    // The first ADD on the node claims its block; the claim rides in the same commit.
    for (cid, args) in [
        ("c1", POD),
        ("c2", "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=api"),
        ("c3", "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=db"),
    ] {
        let before = store.revision().unwrap();
        let (ok, r) = f.run(Mode::Network, "ADD", cid, args, &conf("1.0.0"));
        assert!(ok, "{r}");
        assert_eq!(store.revision().unwrap(), before + 1, "ADD {cid}");
        let before = store.revision().unwrap();
        let (ok, r) = f.run(Mode::Network, "DEL", cid, args, &conf("1.0.0"));
        assert!(ok, "{r}");
        assert_eq!(store.revision().unwrap(), before + 1, "DEL {cid}");
    }
    assert_eq!(f.in_use(), 0);
}

#[test]
fn a_workload_outside_kubernetes_gets_its_networks_profile() {
    let f = Fixture::new(POOL);
    let store = f.store();
    let profile_key = Key::new("Profile", "", "k8s-pod-network");
    let before = store.revision().unwrap();
    let (ok, r) = f.run(Mode::Network, "ADD", "plain1", "", &conf("1.0.0"));
    assert!(ok, "{r}");
    assert_eq!(
        store.revision().unwrap(),
        before + 1,
        "the profile rides in the ADD's commit"
    );
    let e = store
        .get(&Key::new("WorkloadEndpoint", "default", "cni-plain1"))
        .unwrap()
        .expect("endpoint");
    let Resource::WorkloadEndpoint(w) = stored::decode(&e.key.kind, &e.value, 1).unwrap() else {
        panic!("not an endpoint");
    };
    assert_eq!(w.spec.orchestrator.as_deref(), Some("cni"));
    assert_eq!(w.spec.profiles, vec!["k8s-pod-network"]);
    let p = store.get(&profile_key).unwrap().expect("profile made");
    let v: Value = serde_json::from_str(&p.value).unwrap();
    assert_eq!(v["spec"]["egress"][0]["action"], "Allow", "{v}");
    assert_eq!(v["spec"]["ingress"][0]["action"], "Allow", "{v}");
    assert_eq!(
        v["spec"]["ingress"][0]["source"]["selector"], "has(k8s-pod-network)",
        "{v}"
    );
    assert_eq!(v["spec"]["labelsToApply"]["k8s-pod-network"], "", "{v}");

    // A profile that exists is never changed (a person may have edited it).
    store
        .update(
            &profile_key,
            r#"{"apiVersion":"projectcalico.org/v3","kind":"Profile","metadata":{"name":"k8s-pod-network"},"spec":{}}"#,
            None,
        )
        .unwrap();
    let (ok, r) = f.run(Mode::Network, "ADD", "plain2", "", &conf("1.0.0"));
    assert!(ok, "{r}");
    let v: Value = serde_json::from_str(&store.get(&profile_key).unwrap().unwrap().value).unwrap();
    assert!(v["spec"].get("ingress").is_none(), "{v}");
    // DEL leaves the profile (other workloads of the network use it).
    for cid in ["plain1", "plain2"] {
        let (ok, r) = f.run(Mode::Network, "DEL", cid, "", &conf("1.0.0"));
        assert!(ok, "{r}");
    }
    assert!(store.get(&profile_key).unwrap().is_some());

    // With a policy plugin configured (Calico's policy.type), none is made.
    let g = Fixture::new(POOL);
    let mut c = conf("1.0.0");
    c["policy"] = json!({"type": "k8s"});
    let (ok, r) = g.run(Mode::Network, "ADD", "plain3", "", &c);
    assert!(ok, "{r}");
    assert!(g.store().get(&profile_key).unwrap().is_none());
    c["policy"] = json!("k8s");
    let (ok, r) = g.run(Mode::Network, "ADD", "plain4", "", &c);
    assert!(!ok && r["code"] == 7, "{r}");
}

#[test]
fn a_dual_stack_add_is_one_commit_and_its_handle_holds_both_blocks() {
    let pools = format!(
        "{POOL}---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: pods6}}\nspec: {{cidr: 'fd00:88::/120', blockSize: 122}}\n"
    );
    let f = Fixture::new(&pools);
    let store = f.store();
    let mut dual = conf("1.0.0");
    dual["ipam"]["assign_ipv6"] = json!("true");
    let before = store.revision().unwrap();
    let (ok, r) = f.run(Mode::Network, "ADD", "c1", POD, &dual);
    assert!(ok, "{r}");
    assert_eq!(store.revision().unwrap(), before + 1, "dual-stack ADD");
    let ips: Vec<&str> = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert!(
        ips.len() == 2 && ips[0].starts_with("10.88.0.") && ips[1].starts_with("fd00:88::"),
        "{r}"
    );
    let handles = store.list(Some(HANDLE_KIND), None).unwrap();
    assert_eq!(handles.entries.len(), 1);
    let handle: Handle = serde_json::from_str(&handles.entries[0].value).unwrap();
    assert_eq!(handle.blocks.len(), 2, "{handle:?}");
    assert!(handle.blocks.values().all(|n| *n == 1), "{handle:?}");
    assert_eq!(f.in_use(), 2);
    let before = store.revision().unwrap();
    let (ok, r) = f.run(Mode::Network, "DEL", "c1", POD, &dual);
    assert!(ok, "{r}");
    assert_eq!(store.revision().unwrap(), before + 1, "dual-stack DEL");
    assert_eq!(f.in_use(), 0);
}
