//! Who a CNI call is about: the workload's namespace and name, its endpoint's name, its host
//! interface and its IPAM handle, all derived from the invocation alone so that DEL finds what
//! ADD made without any state of its own.

use tabby_model::node::workload_interface_name;

use crate::protocol::Invocation;

/// A workload's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Whether `CNI_ARGS` named a Kubernetes pod (`K8S_POD_NAME`).
    pub is_k8s: bool,
    /// Namespace: `K8S_POD_NAMESPACE`, else `default`.
    pub namespace: String,
    /// Pod name: `K8S_POD_NAME`, else `cni-` and the container ID.
    pub pod: String,
    /// The WorkloadEndpoint's name: the pod's, with the interface appended when it is not
    /// `eth0`.
    pub wep_name: String,
    /// Host-side interface: `tb` + hash of namespace and pod (and interface when not `eth0`),
    /// or of container ID and interface without a pod.
    pub host_interface: String,
    /// IPAM handle: `<network>.<container ID>` (and `.<interface>` when not `eth0`).
    pub handle: String,
}

/// A name made safe for a resource name: lowercase letters, digits, `-` and `.`.
fn resource_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(200);
    out.trim_matches(['-', '.']).to_owned()
}

impl Identity {
    /// The names for one invocation on network `network`.
    pub fn of(inv: &Invocation, network: &str) -> Self {
        let eth0 = inv.ifname == "eth0";
        let k8s_pod = inv.args.get("K8S_POD_NAME").filter(|p| !p.is_empty());
        let namespace = inv
            .args
            .get("K8S_POD_NAMESPACE")
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| "default".to_owned());
        let pod = match k8s_pod {
            Some(p) => p.clone(),
            None => {
                let short: String = inv.container_id.chars().take(40).collect();
                format!("cni-{}", resource_name(&short))
            }
        };
        let wep_name = if eth0 {
            resource_name(&pod)
        } else {
            resource_name(&format!("{pod}-{}", inv.ifname))
        };
        let host_interface = match (k8s_pod, eth0) {
            (Some(_), true) => workload_interface_name(&namespace, &pod),
            (Some(_), false) => {
                workload_interface_name(&namespace, &format!("{pod}.{}", inv.ifname))
            }
            (None, _) => workload_interface_name(&inv.container_id, &inv.ifname),
        };
        let handle = if eth0 {
            format!("{network}.{}", inv.container_id)
        } else {
            format!("{network}.{}.{}", inv.container_id, inv.ifname)
        };
        Self {
            is_k8s: k8s_pod.is_some(),
            namespace,
            pod,
            wep_name,
            host_interface,
            handle,
        }
    }
}
