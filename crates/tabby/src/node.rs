//! `tabby node run`: open the datastore and hand over to the agent in `tabby-node`.
//! `tabby node status`: ask the running agent and print what it says.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tabby_node::{AgentConfig, AgentStatus, DatastoreStatus, NodeStatus, Routing};

use crate::cli::{NodeCommand, NodeRunArgs, NodeStatusArgs, RoutingArg, StatusOutput};
use crate::output;

/// How long `tabby node status` waits for the agent.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn run(datastore: Option<&str>, cmd: &NodeCommand) -> Result<ExitCode> {
    match cmd {
        NodeCommand::Run(args) => run_agent(datastore, args),
        NodeCommand::Status(args) => status(args),
    }
}

/// GET `/status` from the agent: its JSON body.
fn fetch_status(addr: std::net::SocketAddr) -> Result<String> {
    let hint = || format!("is `tabby node run` running with --metrics-addr {addr}?");
    let mut s = TcpStream::connect_timeout(&addr, STATUS_TIMEOUT)
        .with_context(|| format!("cannot reach the agent at {addr}; {}", hint()))?;
    s.set_read_timeout(Some(STATUS_TIMEOUT))?;
    write!(
        s,
        "GET /status HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .with_context(|| format!("reading the agent's answer from {addr}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{addr} did not answer HTTP; {}", hint()))?;
    if head.split(' ').nth(1) != Some("200") {
        bail!(
            "{addr} answered {:?} to GET /status; {}",
            head.lines().next().unwrap_or_default(),
            hint()
        );
    }
    Ok(body.to_owned())
}

fn status(args: &NodeStatusArgs) -> Result<ExitCode> {
    let body = fetch_status(args.addr)?;
    let status: AgentStatus = serde_json::from_str(&body).with_context(|| {
        format!(
            "the agent at {} sent status this version cannot read",
            args.addr
        )
    })?;
    match args.output {
        StatusOutput::Json => output::out(&body)?,
        StatusOutput::Table => output::out(&format!(
            "{}{}",
            status
                .datastore
                .as_ref()
                .map(render_datastore)
                .unwrap_or_default(),
            render(&status.node)
        ))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `3d4h`, `5m12s`, `40s`: the time in a state, as operators read it.
fn ago(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// One line on the datastore: in sync, or why not and since when.
fn render_datastore(ds: &DatastoreStatus) -> String {
    if ds.in_sync {
        return format!(
            "datastore: in sync at revision {}, programmed up to {}{}\n",
            ds.revision,
            ds.programmed_revision,
            if ds.ready { "" } else { " (not ready yet)" }
        );
    }
    let mut out = format!(
        "datastore: NOT in sync{}; {}\n",
        ds.error_for_secs
            .map(|s| format!(" for {}", ago(s)))
            .unwrap_or_default(),
        if ds.programmed_revision > 0 {
            format!(
                "enforcing the last programmed state (revision {})",
                ds.programmed_revision
            )
        } else {
            "nothing programmed yet".to_owned()
        }
    );
    if let Some(err) = &ds.error {
        out += &format!("datastore error: {err}\n");
    }
    if let Some(ms) = ds.retry_in_ms {
        out += &format!("next attempt in {:.1}s\n", ms as f64 / 1000.0);
    }
    out
}

pub(crate) fn render(st: &NodeStatus) -> String {
    let mut out = format!("node {}: routing by {}\n", st.node, st.routing);
    if let Some(note) = &st.note {
        out += &format!("note: {note}\n");
    }
    let Some(bgp) = &st.bgp else {
        if st.routing == "bgp" {
            out += "BGP speaker not running\n";
        }
        return out;
    };
    out += &format!(
        "BGP: AS {}, router ID {}{}, listening on {}; originating {} prefixes, {} learned routes programmed\n",
        bgp.asn,
        bgp.router_id,
        bgp.cluster_id
            .as_ref()
            .map(|c| format!(", route reflector (cluster {c})"))
            .unwrap_or_default(),
        bgp.listen,
        bgp.originated,
        bgp.learned,
    );
    if let Some(d) = &bgp.tcp_md5 {
        out += &format!(
            "TCP MD5 drops in this namespace (kernel, all peers): {} with a wrong signature \
             (the passwords differ), {} unsigned from a peer we have a password for, {} signed \
             from a peer we have none for\n",
            d.wrong, d.missing, d.unexpected
        );
    }
    if bgp.peers.is_empty() {
        out += "no BGP peers configured\n";
        return out;
    }
    let header: Vec<String> = [
        "PEER",
        "ADDRESS",
        "AS",
        "TYPE",
        "STATE",
        "SINCE",
        "RECEIVED",
        "ADVERTISED",
        "LAST ERROR",
    ]
    .map(str::to_owned)
    .to_vec();
    let rows: Vec<Vec<String>> = bgp
        .peers
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.address.to_string(),
                p.asn.to_string(),
                p.kind.as_str().to_owned(),
                p.state.clone(),
                ago(p.since_secs),
                match p.max_prefixes {
                    Some(limit) => format!("{}/{limit}", p.prefixes_received),
                    None => p.prefixes_received.to_string(),
                },
                p.prefixes_advertised.to_string(),
                last_error(p),
            ]
        })
        .collect();
    out + &output::table(&header, &rows)
}

/// The LAST ERROR column: why the session is down or last went down, and when it is tried
/// again if it is held down or damped.
fn last_error(p: &tabby_node::bgp::PeerReport) -> String {
    let error = p
        .disabled
        .as_ref()
        .map(|d| format!("held down: {d}"))
        .or_else(|| p.last_error.clone());
    match (error, p.retry_in_secs) {
        (Some(e), Some(s)) => format!("{e}; retry in {s}s"),
        (Some(e), None) => e,
        (None, Some(s)) => format!("damped; retry in {s}s"),
        (None, None) => "-".to_owned(),
    }
}

fn run_agent(datastore: Option<&str>, args: &NodeRunArgs) -> Result<ExitCode> {
    let node = match &args.name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("no --name given and the hostname cannot be read")?
            .trim()
            .to_owned(),
    };
    let url = datastore.map_or_else(tabby_store::default_url, str::to_owned);
    let config = AgentConfig {
        node,
        metrics_addr: args.metrics_addr,
        lock_dir: args.lock_dir.clone(),
        routing: match args.routing {
            RoutingArg::Auto => Routing::Auto,
            RoutingArg::Datastore => Routing::Datastore,
            RoutingArg::Bgp => Routing::Bgp,
        },
        bgp_secret_namespace: args.bgp_secret_namespace.clone(),
    };
    // The datastore may not be up yet when the host boots, or may need fixing (TLS files, a
    // foreign prefix): the agent waits for it, saying why on /readyz and /status.
    tabby_node::agent::run_opening(&config, &mut || tabby_store::open(&url).map(Arc::from))
        .with_context(|| format!("tabby node run --name {}", config.node))?;
    Ok(ExitCode::SUCCESS)
}
