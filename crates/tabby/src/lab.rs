//! `tabby lab ...`: arguments and output around `tabby-lab`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tabby_lab::{
    Lab, LabConfig, LabError, LoadOptions, LoadReport, ProbeProtocol, ProbeSpec, RealMatrix,
    ServePort, UpOptions,
};
use tabby_model::Resource;

use crate::cli::{LabCommand, LabProbeArgs, LabRoutingArgs, MatrixOutput};
use crate::output::{self, note, out};
use crate::policy;
use crate::resources::load_inputs;

/// The demo application (also a file users can load themselves).
const DEMO: &str = include_str!("../../../examples/lab/demo.yaml");

pub(crate) fn run(datastore: Option<&str>, cmd: &LabCommand) -> Result<ExitCode> {
    if let LabCommand::Serve { workload, ports } = cmd {
        return serve(workload, ports);
    }
    if let LabCommand::GobgpFib { api } = cmd {
        tabby_lab::gobgp_fib(api)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        bail!("tabby lab needs root: it makes network namespaces, links and nftables tables");
    }
    let exe = std::env::current_exe().context("cannot find the tabby binary itself")?;
    let config = LabConfig::new(exe);
    match cmd {
        LabCommand::Up {
            lab,
            nodes,
            routing,
        } => {
            let lab = Lab::up(&config, &up_options(&lab.name, *nodes, datastore, routing)?)?;
            out(&up_summary(&lab))?;
        }
        LabCommand::Load {
            lab,
            files,
            prune,
            no_wait,
            timeout,
        } => {
            let resources: Vec<Resource> = load_inputs(files, None, true)?
                .into_iter()
                .map(|l| l.resource)
                .collect();
            let mut lab = Lab::open(&config, &lab.name)?;
            let report = lab.load(
                resources,
                LoadOptions {
                    prune: *prune,
                    wait: (!no_wait).then(|| Duration::from_secs(*timeout)),
                },
            )?;
            out(&load_summary(&report, !no_wait))?;
        }
        LabCommand::Matrix { lab, probe, output } => {
            let lab = Lab::open(&config, &lab.name)?;
            let spec = probe_spec(probe)?;
            let m = lab.matrix(&spec)?;
            out(&policy::render_matrix(
                &m.workloads,
                &m.allowed,
                &label(&spec),
                *output,
            ))?;
            if matches!(output, MatrixOutput::Table) {
                out("(. reached, X blocked: real connections between the lab's workloads)\n")?;
            }
            report_anomalies(&m);
        }
        LabCommand::Verify { lab, probe } => {
            let lab = Lab::open(&config, &lab.name)?;
            let spec = probe_spec(probe)?;
            let (text, agree) = verify(&lab, &spec)?;
            out(&text)?;
            if !agree {
                return Ok(ExitCode::FAILURE);
            }
        }
        LabCommand::Status { lab } => {
            let lab = Lab::open(&config, &lab.name)?;
            out(&status(&lab))?;
        }
        LabCommand::Exec {
            lab,
            target,
            command,
        } => {
            let lab = Lab::open(&config, &lab.name)?;
            let status = lab.exec(target, command)?;
            return Ok(status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .map_or(ExitCode::FAILURE, ExitCode::from));
        }
        LabCommand::Down { lab } => {
            let report = tabby_lab::down(&config, &lab.name)?;
            if report.nothing() {
                out(&format!("no lab named {:?}: nothing to remove\n", lab.name))?;
            } else {
                out(&format!(
                    "lab {:?} removed: {} processes stopped, {} network namespaces removed\n",
                    lab.name, report.processes, report.namespaces
                ))?;
            }
        }
        LabCommand::Demo { lab, routing, rm } => {
            let opts = up_options(&lab.name, 3, datastore, routing)?;
            demo(&config, &opts, *rm)?;
        }
        LabCommand::Serve { .. } | LabCommand::GobgpFib { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

fn up_options(
    name: &str,
    nodes: usize,
    datastore: Option<&str>,
    args: &LabRoutingArgs,
) -> Result<UpOptions> {
    Ok(UpOptions {
        name: name.to_owned(),
        nodes,
        datastore: datastore.map(str::to_owned),
        routing: args.routing.parse()?,
        route_reflectors: args.route_reflectors,
        tor: args.tor.as_deref().map(str::parse).transpose()?,
        ipv6: args.ipv6,
    })
}

fn serve(workload: &str, ports: &[String]) -> Result<ExitCode> {
    let mut parsed = Vec::new();
    for p in ports {
        let (protocol, port) = p
            .split_once('/')
            .with_context(|| format!("--port {p}: expected PROTOCOL/PORT, as TCP/80"))?;
        let protocol = parse_protocol(protocol)?;
        let port = port
            .parse()
            .with_context(|| format!("--port {p}: {port:?} is not a port number"))?;
        parsed.push(ServePort { protocol, port });
    }
    tabby_lab::serve(workload, &parsed, || {
        let _ = out("ready\n");
    })?;
    Ok(ExitCode::SUCCESS)
}

fn parse_protocol(p: &str) -> Result<ProbeProtocol> {
    match p.to_ascii_uppercase().as_str() {
        "TCP" => Ok(ProbeProtocol::Tcp),
        "UDP" => Ok(ProbeProtocol::Udp),
        "SCTP" => {
            let why = if tabby_lab::sctp_supported() {
                "the lab's probes and servers speak TCP and UDP only"
            } else {
                "this kernel has no SCTP (no sctp module), so no SCTP packet can be sent"
            };
            bail!("--protocol SCTP: {why}")
        }
        other => bail!("--protocol {other}: the lab probes TCP or UDP"),
    }
}

fn probe_spec(args: &LabProbeArgs) -> Result<ProbeSpec> {
    if args.timeout_ms == 0 {
        bail!("--timeout-ms must be at least 1");
    }
    Ok(ProbeSpec {
        protocol: parse_protocol(&args.protocol)?,
        port: args.port,
        timeout: Duration::from_millis(args.timeout_ms),
    })
}

fn label(spec: &ProbeSpec) -> String {
    format!("{}/{}", spec.protocol, spec.port)
}

fn report_anomalies(m: &RealMatrix) {
    for a in &m.anomalies {
        note(&format!("warning: {a} (counted as blocked)"));
    }
}

fn up_summary(lab: &Lab) -> String {
    let s = lab.state();
    let mut text = format!(
        "lab {:?} is up: {} nodes on 172.30.0.0/24{}, datastore {}, routing by {}\n",
        s.name,
        s.nodes.len(),
        if s.ipv6() {
            " and fd00:172:30::/64 (dual stack)"
        } else {
            ""
        },
        s.datastore,
        routing_summary(s)
    );
    for n in &s.nodes {
        text.push_str(&format!(
            "  {}  {}{}  agent pid {}  log {}\n",
            n.name,
            n.address,
            n.address_v6.map(|a| format!(" {a}")).unwrap_or_default(),
            n.agent_pid,
            n.log.display()
        ));
    }
    if s.datastore_netns.is_some() {
        text.push_str(&format!(
            "the datastore is the lab's own etcd cluster, reachable from the lab's hosts:\n  tabby lab exec --name {} node-1 -- tabby --datastore {} get nodes\n",
            s.name, s.datastore
        ));
    }
    text.push_str(&format!(
        "next: tabby lab load --name {} -f FILE   (examples/lab/demo.yaml is one)\n",
        s.name
    ));
    text
}

/// `datastore`, `BGP (iBGP mesh, AS 64512)`, `BGP (2 route reflectors, AS 64512)`, plus the
/// top-of-rack router.
fn routing_summary(s: &tabby_lab::LabState) -> String {
    if s.routing == tabby_lab::Routing::Datastore {
        return "datastore".to_owned();
    }
    let mut text = if s.route_reflectors == 0 {
        format!("BGP (iBGP mesh, AS {})", tabby_lab::CLUSTER_AS)
    } else {
        format!(
            "BGP ({} route reflector{}, AS {})",
            s.route_reflectors,
            if s.route_reflectors == 1 { "" } else { "s" },
            tabby_lab::CLUSTER_AS
        )
    };
    if let Some(tor) = &s.tor {
        text.push_str(&format!(", top-of-rack router {tor}"));
    }
    text
}

fn load_summary(report: &LoadReport, waited: bool) -> String {
    for w in &report.warnings {
        note(&format!("warning: {w}"));
    }
    let mut text = String::new();
    for o in &report.outcomes {
        text.push_str(&format!("{} {}\n", o.object, o.change));
    }
    for p in &report.pruned {
        text.push_str(&format!("{p} deleted (pruned)\n"));
    }
    let list = |v: &[String]| v.join(", ");
    for (what, v) in [
        ("workloads made", &report.created),
        ("workloads changed", &report.changed),
        ("workloads removed", &report.removed),
    ] {
        if !v.is_empty() {
            text.push_str(&format!("{what}: {}\n", list(v)));
        }
    }
    if waited {
        text.push_str(&format!(
            "every agent has programmed datastore revision {}\n",
            report.revision
        ));
    }
    text
}

/// The real matrix against the evaluator's, off the diagonal: the report and whether all agree.
fn verify(lab: &Lab, spec: &ProbeSpec) -> Result<(String, bool)> {
    let real = lab.matrix(spec)?;
    report_anomalies(&real);
    let cluster = policy::cluster_of(lab.store()?)?;
    let q = policy::connection_query(&spec.protocol.to_string(), spec.port)?;
    let expected = tabby_calc::matrix(&cluster, &q);
    let index: BTreeMap<String, usize> = expected
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| (e.to_string(), i))
        .collect();
    let mut differences = Vec::new();
    let mut compared = 0;
    for (i, from) in real.workloads.iter().enumerate() {
        for (j, to) in real.workloads.iter().enumerate() {
            if i == j {
                continue;
            }
            let (Some(&ei), Some(&ej)) = (index.get(from), index.get(to)) else {
                differences.push(format!(
                    "{from} -> {to}: not in the datastore's view (is the lab's state stale?)"
                ));
                continue;
            };
            compared += 1;
            let want = expected.allowed[ei][ej];
            let got = real.allowed[i][j];
            if want != got {
                let word = |a: bool| if a { "allowed" } else { "denied" };
                differences.push(format!(
                    "{from} -> {to} {}: real traffic {}, policy says {}",
                    label(spec),
                    if got { "passed" } else { "blocked" },
                    word(want)
                ));
            }
        }
    }
    let mut text = format!(
        "lab {:?}, {}: {compared} pairs compared (a workload with itself is not)\n",
        lab.state().name,
        label(spec)
    );
    if differences.is_empty() {
        text.push_str("real traffic agrees with `tabby policy matrix` on every pair\n");
    } else {
        text.push_str(&format!("{} differences:\n", differences.len()));
        for d in &differences {
            text.push_str(&format!("  {d}\n"));
        }
    }
    Ok((text, differences.is_empty()))
}

fn status(lab: &Lab) -> String {
    let s = lab.state();
    let health = lab.health();
    let node_rows: Vec<Vec<String>> = s
        .nodes
        .iter()
        .zip(&health.nodes)
        .map(|(n, h)| {
            let agent = match (h.running, h.ready) {
                (true, true) => "ready",
                (true, false) => "running, not ready",
                (false, _) => "stopped",
            };
            vec![
                n.name.clone(),
                match n.address_v6 {
                    Some(v6) => format!("{} {v6}", n.address),
                    None => n.address.to_string(),
                },
                format!("{agent} (pid {})", n.agent_pid),
                n.log.display().to_string(),
            ]
        })
        .collect();
    let workload_rows: Vec<Vec<String>> = s
        .workloads
        .values()
        .map(|w| {
            let ports: Vec<String> = w.ports.iter().map(ToString::to_string).collect();
            let server = if health.servers.get(&w.key()).copied().unwrap_or(false) {
                "up"
            } else {
                "down"
            };
            vec![
                w.key(),
                w.node.clone(),
                w.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                w.interface.clone(),
                if ports.is_empty() {
                    "-".to_owned()
                } else {
                    ports.join(",")
                },
                server.to_owned(),
            ]
        })
        .collect();
    let mut text = format!(
        "lab {:?}, datastore {}, routing by {}\n\n",
        s.name,
        s.datastore,
        routing_summary(s)
    );
    text.push_str(&output::table(
        &["NODE", "ADDRESS", "AGENT", "LOG"].map(str::to_owned),
        &node_rows,
    ));
    text.push('\n');
    if s.routing == tabby_lab::Routing::Bgp {
        for (node, body) in lab.agent_status() {
            let shown = body
                .as_deref()
                .and_then(|b| serde_json::from_str::<tabby_node::NodeStatus>(b).ok())
                .map_or_else(
                    || format!("node {node}: the agent does not answer /status\n"),
                    |st| crate::node::render(&st),
                );
            text.push_str(&shown);
            text.push('\n');
        }
    }
    if let (Some(tor), Some(n)) = (&s.tor, health.tor_processes) {
        text.push_str(&format!(
            "top-of-rack router: {tor}, {} (tabby lab exec --name {} tor -- ip route)\n",
            if n == 0 {
                "its daemon is not running".to_owned()
            } else {
                format!("{n} processes running")
            },
            s.name
        ));
        text.push_str(&format!(
            "  it advertises the outside, {}{} (its server: .1 TCP/8080)\n",
            tabby_lab::OUTSIDE_V4,
            if s.ipv6() {
                format!(" and {}", tabby_lab::OUTSIDE_V6)
            } else {
                String::new()
            }
        ));
        match lab.tor_sessions() {
            Ok(Some(sessions)) if n > 0 => {
                text.push_str(&sessions);
            }
            Ok(_) => {}
            Err(err) => text.push_str(&format!("(its sessions cannot be read: {err})\n")),
        }
        text.push('\n');
    }
    if workload_rows.is_empty() {
        text.push_str("no workloads yet (tabby lab load)\n");
    } else {
        text.push_str(&output::table(
            &[
                "WORKLOAD",
                "NODE",
                "ADDRESSES",
                "INTERFACE",
                "PORTS",
                "SERVER",
            ]
            .map(str::to_owned),
            &workload_rows,
        ));
    }
    text
}

fn demo(config: &LabConfig, opts: &UpOptions, rm: bool) -> Result<()> {
    let name = opts.name.as_str();
    let mut flags = format!("--routing {}", opts.routing);
    if opts.route_reflectors > 0 {
        flags.push_str(&format!(" --route-reflectors {}", opts.route_reflectors));
    }
    if let Some(tor) = opts.tor {
        flags.push_str(&format!(" --tor {tor}"));
    }
    out(&format!(
        "== tabby lab up --name {name} --nodes 3 {flags}\n"
    ))?;
    let lab = match Lab::up(config, opts) {
        Ok(lab) => lab,
        Err(err @ LabError::Exists { .. }) => return Err(err.into()),
        Err(err) => return Err(err).context("bringing the demo lab up"),
    };
    out(&up_summary(&lab))?;
    drop(lab);
    let shown = run_demo(config, name);
    if rm {
        let report = tabby_lab::down(config, name)?;
        out(&format!(
            "\n== tabby lab down --name {name}: {} processes stopped, {} namespaces removed\n",
            report.processes, report.namespaces
        ))?;
    } else if shown.is_ok() {
        out(&format!(
            "\nThe lab stays up. Try:\n  tabby lab status --name {name}\n  tabby lab matrix --name {name} --port 8080\n  tabby lab exec --name {name} node-1 -- nft list table inet tabby\n  tabby lab exec --name {name} node-1 -- ip route show proto 116   routes learned over BGP\n  tabby lab down --name {name}          removes everything\n"
        ))?;
    }
    shown
}

fn run_demo(config: &LabConfig, name: &str) -> Result<()> {
    let opts = tabby_model::LoadOptions {
        default_namespace: "default".to_owned(),
        enforce_namespace: false,
        apply_defaults: true,
    };
    let resources: Vec<Resource> = tabby_model::load(DEMO, "examples/lab/demo.yaml", &opts)?
        .into_iter()
        .map(|l| l.resource)
        .collect();
    let mut lab = Lab::open(config, name)?;
    out(&format!(
        "\n== tabby lab load --name {name} -f examples/lab/demo.yaml\n"
    ))?;
    let report = lab.load(
        resources,
        LoadOptions {
            prune: false,
            wait: Some(Duration::from_secs(60)),
        },
    )?;
    out(&load_summary(&report, true))?;
    out(&format!("\n== tabby lab status --name {name}\n"))?;
    out(&status(&lab))?;
    for port in [8080, 5432] {
        let spec = ProbeSpec {
            protocol: ProbeProtocol::Tcp,
            port,
            timeout: Duration::from_millis(1000),
        };
        out(&format!(
            "\n== real connections on TCP/{port} (tabby lab matrix --name {name} --port {port})\n"
        ))?;
        let m = lab.matrix(&spec)?;
        report_anomalies(&m);
        out(&policy::render_matrix(
            &m.workloads,
            &m.allowed,
            &label(&spec),
            MatrixOutput::Table,
        ))?;
        out("(. reached, X blocked)\n")?;
        let (text, _) = verify(&lab, &spec)?;
        out(&text)?;
    }
    out(
        "\n== why web/frontend cannot reach the database (tabby policy explain web/frontend shop/database --port 5432)\n",
    )?;
    let cluster = policy::cluster_of(lab.store()?)?;
    let q = policy::connection_query("TCP", 5432)?;
    out(&policy::explain(
        &cluster,
        "web/frontend",
        "shop/database",
        &q,
    )?)?;
    Ok(())
}
