//! `tabby policy matrix|explain`: who can reach whom, and why.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use tabby_calc::{Cluster, Peer, Query, evaluate, matrix};
use tabby_client::Client;
use tabby_model::values::{IntOrString, Protocol};
use tabby_model::{Kind, Resource};

use crate::cli::{ConnectionArgs, MatrixOutput, PolicyCommand, PolicySource};
use crate::output::{self, out};
use crate::resources::load_inputs;

pub(crate) fn run(datastore: Option<&str>, cmd: &PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Matrix {
            source,
            connection,
            output,
        } => {
            let cluster = cluster(datastore, source)?;
            let q = query(connection)?;
            print_matrix(&cluster, &q, *output)?;
        }
        PolicyCommand::Explain {
            from,
            to,
            source,
            connection,
        } => {
            let cluster = cluster(datastore, source)?;
            let q = query(connection)?;
            out(&explain(&cluster, from, to, &q)?)?;
            print_notes(&cluster);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn query(c: &ConnectionArgs) -> Result<Query> {
    connection_query(&c.protocol, c.port)
}

/// The query for a new connection on `protocol` (by name) to `port`.
pub(crate) fn connection_query(protocol: &str, port: u16) -> Result<Query> {
    let protocol = Protocol::parse(&IntOrString::String(protocol.to_owned()))
        .map_err(|e| anyhow!("--protocol: {e}"))?;
    Ok(Query {
        protocol,
        port: protocol.has_ports().then_some(port),
        source_port: None,
        icmp: None,
    })
}

/// The verdict for one connection and the tiers, policies and rules behind it.
pub(crate) fn explain(cluster: &Cluster, from: &str, to: &str, q: &Query) -> Result<String> {
    let src = peer(cluster, from)?;
    let dst = peer(cluster, to)?;
    let verdict = evaluate(cluster, src, dst, q);
    let word = if verdict.allowed() {
        "ALLOWED"
    } else {
        "DENIED"
    };
    Ok(format!(
        "{from} -> {to} {q}: {word}\n\n{}{}",
        verdict.egress, verdict.ingress
    ))
}

/// Resources from the files given, else from the datastore.
fn cluster(datastore: Option<&str>, source: &PolicySource) -> Result<Cluster> {
    if source.files.is_empty() {
        let url = datastore.map_or_else(tabby_store::default_url, str::to_owned);
        return stored_cluster(&url);
    }
    let resources: Vec<Resource> = {
        load_inputs(&source.files, None, true)?
            .into_iter()
            .map(|l| l.resource)
            .collect()
    };
    Ok(Cluster::from_resources(&resources))
}

/// Every resource of the datastore at `url`, as the evaluator sees a cluster.
fn stored_cluster(url: &str) -> Result<Cluster> {
    let store = tabby_store::open(url).with_context(|| format!("cannot open datastore {url}"))?;
    cluster_of(store)
}

/// Every resource of a datastore, as the evaluator sees a cluster.
pub(crate) fn cluster_of(store: Box<dyn tabby_store::Datastore>) -> Result<Cluster> {
    let client = Client::new(store);
    let mut all = Vec::new();
    for kind in Kind::ALL {
        all.extend(client.list(*kind, None)?);
    }
    Ok(Cluster::from_resources(&all))
}

pub(crate) fn print_notes(cluster: &Cluster) {
    for note in &cluster.notes {
        output::note(&format!("note: {note}"));
    }
}

fn peer<'a>(cluster: &'a Cluster, name: &str) -> Result<Peer<'a>> {
    if let Some(ep) = cluster.endpoint(name) {
        return Ok(Peer::Endpoint(ep));
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        if let Some(ep) = cluster.endpoints.values().find(|e| e.ips.contains(&ip)) {
            return Ok(Peer::Endpoint(ep));
        }
        return Ok(Peer::External(ip));
    }
    let known: Vec<String> = cluster.endpoints.keys().map(ToString::to_string).collect();
    if known.is_empty() {
        bail!("unknown pod {name:?}: the input has no pods or workload endpoints");
    }
    let near: Vec<&String> = known
        .iter()
        .filter(|k| k.ends_with(&format!("/{name}")) || k.contains(name))
        .collect();
    let hint = if near.is_empty() {
        format!("known: {}", known.join(", "))
    } else {
        format!(
            "did you mean {}?",
            near.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )
    };
    bail!("unknown pod {name:?} (name pods as namespace/name, or give an IP address); {hint}")
}

fn print_matrix(cluster: &Cluster, q: &Query, format: MatrixOutput) -> Result<()> {
    let m = matrix(cluster, q);
    let names: Vec<String> = m.endpoints.iter().map(ToString::to_string).collect();
    out(&render_matrix(&names, &m.allowed, &q.to_string(), format))?;
    if matches!(format, MatrixOutput::Table) {
        out("(. allowed, X denied; `tabby policy explain FROM TO` says why)\n")?;
    }
    print_notes(cluster);
    Ok(())
}

/// A matrix as a table (`.` allowed, `X` denied) or as JSON
/// (`{"pods": [...], "allowed": {from: {to: bool}}}`); `label` heads the table.
pub(crate) fn render_matrix(
    names: &[String],
    allowed: &[Vec<bool>],
    label: &str,
    format: MatrixOutput,
) -> String {
    match format {
        MatrixOutput::Json => {
            let mut rows = BTreeMap::new();
            for (i, from) in names.iter().enumerate() {
                let row: BTreeMap<&str, bool> = names
                    .iter()
                    .enumerate()
                    .map(|(j, to)| (to.as_str(), allowed[i][j]))
                    .collect();
                rows.insert(from.as_str(), row);
            }
            format!("{}\n", serde_json::json!({"pods": names, "allowed": rows}))
        }
        MatrixOutput::Table => {
            let mut header = vec![format!("{label} from\\to")];
            header.extend(names.iter().cloned());
            let rows: Vec<Vec<String>> = names
                .iter()
                .enumerate()
                .map(|(i, from)| {
                    let mut row = vec![from.clone()];
                    row.extend(
                        allowed[i]
                            .iter()
                            .map(|a| if *a { ".".to_owned() } else { "X".to_owned() }),
                    );
                    row
                })
                .collect();
            output::table(&header, &rows)
        }
    }
}
