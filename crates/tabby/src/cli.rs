//! Command-line arguments. The doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "tabby networks containers, VMs and hosts the way Project Calico does: every workload gets a \
routable IP, every host routes, and network policy is enforced by each host's kernel.";

/// The kinds and the names they go by, for `--help` texts.
macro_rules! kinds_help {
    () => {
        "\
Kinds (any of the names in brackets):
  Calico projectcalico.org/v3:
    Tier [tier, tiers]                         GlobalNetworkPolicy [gnp, globalnetworkpolicies]
    NetworkPolicy [np, policy, networkpolicy]  StagedNetworkPolicy [snp]
    StagedGlobalNetworkPolicy [sgnp]           GlobalNetworkSet [gns]   NetworkSet [netset]
    Profile [pro]  IPPool [ippool, ipp, pool]  IPReservation [ipr]
    BGPConfiguration [bgpconfig]  BGPPeer [bgppeer, bp]  FelixConfiguration [felixconfig]
    Node [node, no]  HostEndpoint [hep]  WorkloadEndpoint [wep]
  Kubernetes:
    NetworkPolicy.networking.k8s.io [netpol, knp]  Namespace [ns]  Pod [po]  ServiceAccount [sa]
    Secret [secret] (BGP passwords)
  all: every kind (get only)"
    };
}

/// tabby: routable workload IPs and per-host network policy, Calico-compatible.
#[derive(Debug, Parser)]
#[command(name = "tabby", version, about = ABOUT, after_help = "\
Examples:
  tabby apply -f examples/                 store every resource under examples/
  tabby get gnp                            list global network policies
  tabby get np -A -o wide                  namespaced policies in every namespace
  tabby selector parse \"app == 'web'\"      canonical form and ID of a selector

The datastore is a SQLite file by default; set --datastore or TABBY_DATASTORE to choose another.")]
pub(crate) struct Cli {
    /// Datastore URL: sqlite:PATH (default: sqlite:/var/lib/tabby/tabby.db as root), etcd://HOST:PORT[,...][/PREFIX] or etcds://...?ca=PATH[&cert=PATH&key=PATH].
    #[arg(long, global = true, env = "TABBY_DATASTORE", value_name = "URL")]
    pub(crate) datastore: Option<String>,
    /// More log output on stderr (-v info, -vv debug). TABBY_LOG takes a tracing filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create or update the resources in files: every document or none.
    #[command(after_help = "\
Every document of every file is validated first; if any is invalid, every problem is listed
(kind, name, field path and reason) and nothing is written. The write itself is one atomic
datastore commit.

Examples:
  tabby apply -f policy.yaml
  tabby apply -f examples/                 every .yaml, .yml and .json file in the folder
  kubectl get ns,pods,netpol -A -o yaml | tabby apply -f -
  tabby apply -f policy.yaml --dry-run     validate and show what would change")]
    Apply(WriteArgs),
    /// Create the resources in files; fails (writing nothing) if any exists.
    #[command(after_help = "Example:\n  tabby create -f tier.yaml")]
    Create(WriteArgs),
    /// Replace existing resources; fails (writing nothing) if any is missing.
    #[command(after_help = "\
A metadata.resourceVersion in the file must match the stored one, so that a change made by
someone else since you read the object is never overwritten (get -o yaml, edit, replace).

Example:
  tabby get gnp deny-db -o yaml > p.yaml && $EDITOR p.yaml && tabby replace -f p.yaml")]
    Replace(WriteArgs),
    /// Delete resources named in files, or by kind and name: all or nothing.
    #[command(after_help = concat!("\
Examples:
  tabby delete -f policy.yaml
  tabby delete gnp deny-db allow-dns
  tabby delete np web -n prod --ignore-not-found

", kinds_help!()))]
    Delete(DeleteArgs),
    /// List or show resources.
    #[command(after_help = concat!("\
Examples:
  tabby get ippools                        a table of pools
  tabby get gnp deny-db -o yaml            one policy as YAML (apply-able as is)
  tabby get np -A -o wide                  policies of every namespace, more columns
  tabby get all -A                         everything stored but Secrets

", kinds_help!()))]
    Get(GetArgs),
    /// Add, change or remove labels of one resource.
    #[command(after_help = "\
Examples:
  tabby label wep web-1 -n prod tier=frontend       add a label
  tabby label node node-1 rack=r2 --overwrite       change an existing label
  tabby label gns blocklist threat-                 remove a label")]
    Label(LabelArgs),
    /// Parse and evaluate Calico selectors (for scripts and debugging).
    #[command(subcommand)]
    Selector(SelectorCommand),
    /// Analyse policy: who can reach whom, and which tier, policy and rule decides.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The per-host agent: program this host's dataplane from the datastore.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Workload addresses: usage per pool and block, consistency checks, manual release.
    #[command(subcommand)]
    Ipam(IpamCommand),
    /// A virtual cluster on this machine: hosts and workloads in network namespaces, real
    /// agents, real traffic.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Whole-datastore copies: export, import, migrate between SQLite and etcd.
    #[command(subcommand)]
    Datastore(DatastoreCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum DatastoreCommand {
    /// Write every stored object (resources and IPAM state) as YAML.
    #[command(after_help = "\
Each object becomes a DatastoreObject document with its datastore key and stored value, so
that import restores it exactly, IPAM blocks and handles included.

Examples:
  tabby datastore export > backup.yaml
  tabby datastore export -o backup.yaml --datastore etcd://10.0.0.1:2379")]
    Export {
        /// Write to this file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Restore an export into the datastore (it must be empty unless --overwrite).
    #[command(after_help = "\
Every document is checked before anything is written; objects go in commits of 100 and are
read back and compared at the end.

Examples:
  tabby datastore import -f backup.yaml
  tabby datastore import -f backup.yaml --datastore etcd://10.0.0.1:2379 --overwrite")]
    Import {
        /// The export to read (`-` for standard input).
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
        /// Replace objects that already exist instead of refusing a non-empty datastore.
        #[arg(long)]
        overwrite: bool,
    },
    /// Copy every object from one datastore to another and verify the copy.
    #[command(after_help = "\
Stop the writers (agents, CNI plugin) first: the source is listed again after the copy, and
a source that changed meanwhile fails the migration. The target must be empty unless
--overwrite.

Example:
  tabby datastore migrate --from sqlite:/var/lib/tabby/tabby.db --to etcd://10.0.0.1:2379,10.0.0.2:2379")]
    Migrate {
        /// The datastore to copy from.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The datastore to copy into.
        #[arg(long, value_name = "URL")]
        to: String,
        /// Replace objects that already exist in the target instead of refusing.
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum IpamCommand {
    /// Show address usage per pool (and per block), or everything about one address.
    #[command(after_help = "\
Examples:
  tabby ipam show                          pools: size, addresses in use, blocks
  tabby ipam show --show-blocks            also every block: its node and usage
  tabby ipam show --ip 10.244.0.5          pool, block, node, handle and owner of one address
  tabby ipam show -o json")]
    Show {
        /// Only this address.
        #[arg(long, value_name = "IP")]
        ip: Option<std::net::IpAddr>,
        /// List the blocks as well.
        #[arg(long)]
        show_blocks: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: IpamOutput,
    },
    /// Look for leaked addresses, blocks of nodes that are gone, and conflicts; exit status 1
    /// when anything is found.
    #[command(after_help = "\
Leaked: an allocation whose workload endpoint is gone or does not hold the address (release it
with `tabby ipam release --ip X --sequence N`, N as shown, so that an address reused meanwhile
is not freed). Orphaned block: affine to a node with no Node resource. Conflicts: overlapping
blocks, an address in two endpoints, an endpoint address IPAM does not know, records that
disagree.

Examples:
  tabby ipam check
  tabby ipam check -o json")]
    Check {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: IpamOutput,
    },
    /// Free one address.
    #[command(after_help = "\
Examples:
  tabby ipam release --ip 10.244.0.5
  tabby ipam release --ip 10.244.0.5 --sequence 12     only if it is still that allocation")]
    Release {
        /// The address.
        #[arg(long, value_name = "IP")]
        ip: std::net::IpAddr,
        /// Release only if the allocation still has this sequence number (from `show --ip`
        /// or `check`).
        #[arg(long, value_name = "N")]
        sequence: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum IpamOutput {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

/// Which lab.
#[derive(Debug, Args)]
pub(crate) struct LabName {
    /// The lab's name (1 to 20 of a-z, 0-9 and -).
    #[arg(long, value_name = "LAB", default_value = "demo")]
    pub(crate) name: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LabCommand {
    /// Bring up a lab: N hosts on a shared L2 fabric, each running `tabby node run`.
    #[command(after_help = "\
Needs root. Every host is a network namespace (tabby-lab-LAB.node-I) attached to a bridge in
tabby-lab-LAB.fabric (172.30.0.0/24); nothing is made in this machine's own network. The lab
gets its own SQLite datastore under /run/tabby/lab/LAB (TABBY_LAB_DIR moves it) unless
--datastore names one; `--datastore etcd` runs a 3-member etcd cluster inside the lab (in the
fabric namespace, on 172.30.0.1). The Node resources and, when the datastore has no pool,
Calico's default pool are written to it.

Routing (--routing): `bgp` (the default) gives every Node spec.bgp with its fabric address and
a BGPConfiguration (AS 64512, node-to-node mesh on); the agents peer in a full iBGP mesh and
program the routes they learn (proto 116). `--route-reflectors K` makes the first K nodes route
reflectors (routeReflectorClusterID 244.0.0.1, label route-reflector=true), turns the mesh off
and adds a BGPPeer so that the other nodes peer only with them. `--tor bird|gobgp|frr` adds a
top-of-rack router (tabby-lab-LAB.tor, 172.30.0.254, AS 65000) running that daemon, which every
node peers with over eBGP (a global BGPPeer); it installs the workload routes in its kernel, so
`tabby lab exec tor -- ...` reaches workloads from outside the cluster, and advertises the
outside (203.0.113.0/24, a server on 203.0.113.1 TCP/8080) that the nodes route through it. `datastore`: agents
program routes to each other's workloads from the Node resources and run no BGP.
The agents start together; `lab up` returns once every agent is ready and every BGP session is
Established (or fails naming each node's peers that are not, with their state and last error).
Nodes pass routes learned from each other on to the router with the originating node as next
hop (shared fabric), so the router sends a workload's traffic straight to its host.

--ipv6: dual stack. Hosts also get fd00:172:30::H/64 on the fabric (the router ::254) and
ipv6Address in spec.bgp, the datastore an IPv6 pool (fd00:192:168::/48, /122 blocks) when it
has none, pods an address of each family. As Calico (BIRD and BIRD6), nodes peer once per
family: IPv4 routes over IPv4 sessions, IPv6 routes over IPv6 sessions, with each other and
with the router (a second global BGPPeer, tor-v6).

Examples:
  tabby lab up                              three nodes, lab \"demo\", iBGP mesh
  tabby lab up --name big --nodes 5
  tabby lab up --name rr --nodes 4 --route-reflectors 1
  tabby lab up --name dc --tor bird         a BIRD top-of-rack router peering with every node
  tabby lab up --name ds --ipv6 --tor frr   dual stack, IPv4 and IPv6 routes to an FRR router
  tabby lab up --name flat --routing datastore
  tabby lab up --name shared --datastore sqlite:/tmp/lab.db
  tabby lab up --name ha --datastore etcd      the lab's own 3-member etcd cluster")]
    Up {
        #[command(flatten)]
        lab: LabName,
        /// How many hosts.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[command(flatten)]
        routing: LabRoutingArgs,
    },
    /// Load namespaces, pods or workload endpoints, policies and pools into a lab.
    #[command(after_help = "\
The same files as `tabby policy matrix` (a `kubectl get ns,pods,netpol -A -o yaml` dump works).
Each pod becomes a workload on a node (spec.nodeName, else the least loaded), made as a kubelet
makes it: the Pod is written, then tabby's CNI plugin plumbs it and takes its address from an
IPAM block affine to that node (from the file's IPv4 pools when it brings any), with a small
server on every declared TCP and UDP container port. A status.podIP in the file (inside a pool)
is requested from the IPAM. Loading again updates in place: a label change is a datastore write only. The
command returns once every agent has programmed the result (--no-wait: at once).

Examples:
  tabby lab load -f examples/lab/demo.yaml
  tabby lab load --name big -f cluster.yaml --prune     also remove what the file no longer has")]
    Load {
        #[command(flatten)]
        lab: LabName,
        /// Files (or folders, or - for standard input).
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        files: Vec<PathBuf>,
        /// Remove what earlier loads wrote and these files no longer have.
        #[arg(long)]
        prune: bool,
        /// Return without waiting for the agents.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the agents.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        timeout: u64,
    },
    /// Probe every pair of workloads with real connections and print who reached whom.
    #[command(after_help = "\
All probes run in parallel from inside the source workload. A probe succeeds when the
destination answers (its server, or its own refusal when nothing listens on the port); policy
drops, so a denied probe waits out --timeout-ms. The JSON shape is `tabby policy matrix`'s.

Examples:
  tabby lab matrix --port 8080
  tabby lab matrix --name big --port 53 --protocol UDP -o json")]
    Matrix {
        #[command(flatten)]
        lab: LabName,
        #[command(flatten)]
        probe: LabProbeArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: MatrixOutput,
    },
    /// Compare the real matrix with what `tabby policy matrix` computes for the lab's
    /// datastore; print every difference (exit status 1 if any).
    #[command(after_help = "\
Pairs of a workload with itself are not compared (a workload reaches itself over loopback,
where no policy applies).

Example:
  tabby lab verify --port 8080")]
    Verify {
        #[command(flatten)]
        lab: LabName,
        #[command(flatten)]
        probe: LabProbeArgs,
    },
    /// Show a lab's nodes (agent running and ready?), their BGP peers and the workloads.
    #[command(after_help = "\
Under BGP every node's peers are listed as `tabby node status` shows them (from the agent's
/status): address, AS, type, state, time in state, prefixes received and advertised. A lab with
--tor also shows the router's own view of its sessions (birdc show protocols, gobgp neighbor,
or vtysh show bgp summary).")]
    Status {
        #[command(flatten)]
        lab: LabName,
    },
    /// Run a command inside a workload's (or a node's) network namespace.
    #[command(after_help = "\
TARGET is namespace/pod, a pod name that is unique in the lab, a node name, or `tor` (the
top-of-rack router of a lab made with --tor: outside the cluster, on the fabric).

Examples:
  tabby lab exec web/frontend -- ip addr
  tabby lab exec node-1 -- nft list table inet tabby
  tabby lab exec node-1 -- ip route show proto 116     routes learned over BGP
  tabby lab exec tor -- ip route                       what the top-of-rack router learned")]
    Exec {
        #[command(flatten)]
        lab: LabName,
        /// namespace/pod, pod, node-N or tor.
        target: String,
        /// The command and its arguments (after --).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Remove a lab: its processes, namespaces and files (also after a crash).
    Down {
        #[command(flatten)]
        lab: LabName,
    },
    /// Bring up three hosts with a small application and its policies, and show who can
    /// reach whom and why.
    #[command(after_help = "\
The application is examples/lab/demo.yaml. The hosts peer over BGP (as `lab up`; --routing,
--route-reflectors and --tor as there). The lab stays up afterwards for you to explore
(`tabby lab matrix`, `tabby lab exec`); `tabby lab down` removes it, or pass --rm.")]
    Demo {
        #[command(flatten)]
        lab: LabName,
        #[command(flatten)]
        routing: LabRoutingArgs,
        /// Remove the lab at the end.
        #[arg(long)]
        rm: bool,
    },
    /// Installs GoBGP's best routes in the kernel (run by the lab inside a GoBGP top-of-rack
    /// router; not for people).
    #[command(hide = true)]
    GobgpFib {
        /// gobgpd's API address.
        #[arg(long, default_value = "127.0.0.1:50051")]
        api: String,
    },
    /// A workload's server (run by the lab inside the workload; not for people).
    #[command(hide = true)]
    Serve {
        /// The workload's name, sent back to every probe.
        #[arg(long)]
        workload: String,
        /// PROTOCOL/PORT to serve (TCP/80, UDP/53). Repeatable.
        #[arg(long = "port", value_name = "PROTOCOL/PORT")]
        ports: Vec<String>,
    },
}

/// How a lab's nodes learn routes to each other's workloads.
#[derive(Debug, Args)]
pub(crate) struct LabRoutingArgs {
    /// bgp (agents peer and program learned routes) or datastore (routes from the Nodes).
    #[arg(long, value_name = "MODE", default_value = "bgp")]
    pub(crate) routing: String,
    /// Under BGP: the first K nodes are route reflectors and the mesh is off.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub(crate) route_reflectors: usize,
    /// Under BGP: a top-of-rack router running bird, gobgp or frr, peering with every node.
    #[arg(long, value_name = "DAEMON")]
    pub(crate) tor: Option<String>,
    /// Dual stack: IPv6 on the fabric (fd00:172:30::/64), an IPv6 pool, pods with an IPv4 and
    /// an IPv6 address, and under BGP an IPv6 session beside each IPv4 one.
    #[arg(long)]
    pub(crate) ipv6: bool,
}

/// What a lab probe sends.
#[derive(Debug, Args)]
pub(crate) struct LabProbeArgs {
    /// Destination port.
    #[arg(long, default_value_t = 80)]
    pub(crate) port: u16,
    /// TCP or UDP (SCTP needs a kernel with SCTP).
    #[arg(long, default_value = "TCP")]
    pub(crate) protocol: String,
    /// How long one probe waits for an answer.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub(crate) timeout_ms: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Run the agent for one node until stopped: it syncs from the datastore, programs the
    /// `inet tabby` nftables table and routes to local workloads, and serves health.
    #[command(after_help = "\
Needs root (nft and netlink). One agent per node name per machine: a second one is refused
(lock file under --lock-dir). While the datastore is unreachable the last programmed state
stays enforced and the agent retries.

Health on --metrics-addr: /livez, /readyz (200 while in sync and programmed; 503 naming the
datastore error while it is unreachable), /metrics (Prometheus text), /status (`tabby node
status`: the datastore's sync state and last error, routing and BGP).

Examples:
  tabby node run --name node-1
  tabby node run --name node-1 --datastore sqlite:/var/lib/tabby/tabby.db -v
  tabby node run --name node-1 --metrics-addr 127.0.0.1:9199
  ip netns exec lab-host tabby node run --name node-1   inside a network namespace
  tabby node run --name node-1 --routing bgp            BGP even without spec.bgp (fails loudly)

Routing (--routing): who programs routes to other nodes' workloads. `bgp` runs the BGP speaker
(full iBGP mesh on AS 64512 by default; BGPConfiguration, BGPPeer and the Node's spec.bgp as in
Calico) and programs only learned routes; `datastore` programs routes from the datastore (nodes
on one L2 segment) and runs no speaker; `auto` is `bgp` when this node's Node has spec.bgp.

BGP passwords (TCP MD5): a BGPPeer's password.secretKeyRef {name, key} and BGPConfiguration
default's nodeMeshPassword name a key of a v1 Secret in --bgp-secret-namespace (calico-system
unless set). Until that Secret and key exist the session does not start and `tabby node status`
says which is missing; a changed value restarts the session with it.")]
    Run(NodeRunArgs),
    /// Show the agent's routing status: every BGP peer with its state and prefix counts.
    #[command(after_help = "\
Asks the agent running on this machine (its --metrics-addr, GET /status).

Columns: peer name (Mesh_/Node_/Global_ as Calico names them), address, AS, type (mesh,
global, node-specific, reflector, reflector-client), state, time in state, prefixes received
and advertised, last error.

Examples:
  tabby node status
  tabby node status -o json
  ip netns exec lab-host tabby node status --addr 127.0.0.1:9199")]
    Status(NodeStatusArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RoutingArg {
    /// `bgp` when this node's Node has spec.bgp, else `datastore`.
    Auto,
    /// Routes to other nodes' workloads from the datastore; no BGP speaker.
    Datastore,
    /// Routes to other nodes' workloads learned by BGP.
    Bgp,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum StatusOutput {
    /// One line per peer.
    Table,
    /// The agent's JSON as it is.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct NodeStatusArgs {
    /// The agent's health address (its --metrics-addr).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9099")]
    pub(crate) addr: std::net::SocketAddr,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub(crate) output: StatusOutput,
}

#[derive(Debug, Args)]
pub(crate) struct NodeRunArgs {
    /// This host's node name (as WorkloadEndpoints' spec.node says). Default: the hostname.
    #[arg(long, value_name = "NODE")]
    pub(crate) name: Option<String>,
    /// Where /livez, /readyz and /metrics answer.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9099")]
    pub(crate) metrics_addr: std::net::SocketAddr,
    /// Folder of the per-node lock file.
    #[arg(long, value_name = "DIR", default_value = "/run/tabby")]
    pub(crate) lock_dir: PathBuf,
    /// Who programs routes to other nodes' workloads (see below).
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) routing: RoutingArg,
    /// Namespace of the Secrets that BGP passwords (BGPPeer password.secretKeyRef,
    /// BGPConfiguration nodeMeshPassword) name, as calico-node reads its own namespace's.
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "TABBY_BGP_SECRET_NAMESPACE",
        default_value = "calico-system"
    )]
    pub(crate) bgp_secret_namespace: String,
}

/// Where the analysed resources come from.
#[derive(Debug, Args)]
pub(crate) struct PolicySource {
    /// Files of namespaces, pods or workload endpoints, and policies (a `kubectl get
    /// ns,pods,networkpolicies -A -o yaml` dump works as it is). Default: the datastore.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub(crate) files: Vec<PathBuf>,
}

/// The kind of connection asked about.
#[derive(Debug, Args)]
pub(crate) struct ConnectionArgs {
    /// Destination port.
    #[arg(long, default_value_t = 80)]
    pub(crate) port: u16,
    /// TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP")]
    pub(crate) protocol: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum MatrixOutput {
    /// A grid: `.` allowed, `X` denied.
    Table,
    /// {"pods": [...], "allowed": {"ns/from": {"ns/to": true|false}}}
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Print who can reach whom on one port and protocol.
    #[command(after_help = "\
Each cell is the verdict for a new connection from the row's pod to the column's pod: the
source's egress policy and the destination's ingress policy must both allow it.

Examples:
  tabby policy matrix -f cluster.yaml --port 80
  kubectl get ns,pods,netpol -A -o yaml | tabby policy matrix -f - --port 5432 -o json
  tabby policy matrix --port 53 --protocol UDP        from the datastore")]
    Matrix {
        #[command(flatten)]
        source: PolicySource,
        #[command(flatten)]
        connection: ConnectionArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: MatrixOutput,
    },
    /// Explain the verdict for one connection: the tiers, policies and rules that decide it.
    #[command(after_help = "\
FROM and TO are pods or workload endpoints as namespace/name, or IP addresses (an address
outside the cluster has no policy of its own).

Examples:
  tabby policy explain shop/frontend shop/database --port 5432 -f cluster.yaml
  tabby policy explain 203.0.113.7 shop/frontend --port 443")]
    Explain {
        /// Source: namespace/name or an IP address.
        from: String,
        /// Destination: namespace/name or an IP address.
        to: String,
        #[command(flatten)]
        source: PolicySource,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

/// Where resources come from.
#[derive(Debug, Args)]
pub(crate) struct FileArgs {
    /// A file, a folder (its .yaml, .yml and .json files) or - for standard input. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub(crate) files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct WriteArgs {
    #[command(flatten)]
    pub(crate) files: FileArgs,
    /// Namespace for namespaced resources that name none; documents naming another are refused.
    #[arg(short, long)]
    pub(crate) namespace: Option<String>,
    /// Validate and show what would change, writing nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Files naming the resources to delete.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "PATH",
        conflicts_with = "kind"
    )]
    pub(crate) files: Vec<PathBuf>,
    /// The kind, when deleting by name.
    #[arg(required_unless_present = "files", requires = "names")]
    pub(crate) kind: Option<String>,
    /// Names of the resources to delete.
    pub(crate) names: Vec<String>,
    /// Namespace of namespaced resources (default: default).
    #[arg(short, long)]
    pub(crate) namespace: Option<String>,
    /// Skip resources that do not exist instead of failing.
    #[arg(long)]
    pub(crate) ignore_not_found: bool,
    /// Show what would be deleted, deleting nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OutputFormat {
    /// A table of names and key fields.
    Table,
    /// A table with more columns.
    Wide,
    /// YAML documents, apply-able as they are.
    Yaml,
    /// JSON (one object, or a List for several).
    Json,
    /// kind/name lines, for scripts.
    Name,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The kind (see below), or `all`.
    pub(crate) kind: String,
    /// Names; all objects of the kind when none is given.
    pub(crate) names: Vec<String>,
    /// Namespace of namespaced kinds (default: default).
    #[arg(short, long, conflicts_with = "all_namespaces")]
    pub(crate) namespace: Option<String>,
    /// List namespaced kinds across every namespace.
    #[arg(short = 'A', long)]
    pub(crate) all_namespaces: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
}

#[derive(Debug, Args)]
pub(crate) struct LabelArgs {
    /// The kind of the resource.
    pub(crate) kind: String,
    /// Its name.
    pub(crate) name: String,
    /// Label changes: key=value to set, key- to remove.
    #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
    pub(crate) changes: Vec<String>,
    /// Namespace of a namespaced resource (default: default).
    #[arg(short, long)]
    pub(crate) namespace: Option<String>,
    /// Allow changing the value of a label that is already set.
    #[arg(long)]
    pub(crate) overwrite: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SelectorCommand {
    /// Print a selector's canonical form and ID; exit status 1 if it is invalid.
    #[command(after_help = "\
Examples:
  tabby selector parse \"app == 'web' && !has(canary)\"
  tabby selector parse 'role in {\"db\", \"cache\"}' -o json
    {\"canonical\":\"role in {\\\"cache\\\", \\\"db\\\"}\",\"id\":\"s:...\"}")]
    Parse {
        /// The selector expression (Calico syntax).
        expr: String,
        /// text: canonical form, then ID, one per line; json: {\"canonical\": ..., \"id\": ...}.
        #[arg(short, long, value_enum, default_value = "text")]
        output: SelectorOutput,
    },
    /// Print true or false: does the selector match these labels?
    #[command(after_help = "\
Example:
  tabby selector match \"app == 'web'\" --labels '{\"app\": \"web\", \"tier\": \"1\"}'    prints true")]
    Match {
        /// The selector expression (Calico syntax).
        expr: String,
        /// The labels, as a JSON object of strings.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        labels: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SelectorOutput {
    /// Canonical form and ID on two lines.
    Text,
    /// A JSON object.
    Json,
}
