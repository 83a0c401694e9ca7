//! `tabby ipam show|check|release`: reports and repairs over `tabby-ipam`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use tabby_ipam::{Ipam, Released};

use crate::cli::{IpamCommand, IpamOutput};
use crate::output::{out, table};

pub(crate) fn run(datastore: Option<&str>, cmd: &IpamCommand) -> Result<ExitCode> {
    let url = datastore.map_or_else(tabby_store::default_url, str::to_owned);
    let store = tabby_store::open(&url).with_context(|| format!("opening the datastore {url}"))?;
    let ipam = Ipam::new(store.as_ref());
    match cmd {
        IpamCommand::Show {
            ip: Some(ip),
            output,
            ..
        } => {
            let info = ipam.lookup(*ip)?;
            match output {
                IpamOutput::Json => out(&json(&info))?,
                IpamOutput::Table => {
                    let none = || "-".to_owned();
                    let mut rows = vec![
                        ("address", info.ip.to_string()),
                        ("pool", info.pool.clone().unwrap_or_else(none)),
                        ("block", info.block.clone().unwrap_or_else(none)),
                        ("node", info.affinity.clone().unwrap_or_else(none)),
                        ("reserved by", info.reserved_by.clone().unwrap_or_else(none)),
                        (
                            "handle",
                            info.handle.clone().unwrap_or_else(|| "- (free)".to_owned()),
                        ),
                        (
                            "sequence",
                            info.sequence.map_or_else(none, |s| s.to_string()),
                        ),
                    ];
                    for (k, v) in &info.attrs {
                        rows.push((k.as_str(), v.clone()));
                    }
                    let text: String = rows.iter().map(|(k, v)| format!("{k:<12} {v}\n")).collect();
                    out(&text)?;
                }
            }
        }
        IpamCommand::Show {
            ip: None,
            show_blocks,
            output,
        } => {
            let usage = ipam.usage()?;
            match output {
                IpamOutput::Json => out(&json(&usage))?,
                IpamOutput::Table => {
                    let header =
                        ["POOL", "CIDR", "IN USE", "SIZE", "BLOCKS", "STATE"].map(str::to_owned);
                    let rows: Vec<Vec<String>> = usage
                        .pools
                        .iter()
                        .map(|p| {
                            vec![
                                p.name.clone(),
                                p.cidr.clone(),
                                p.in_use.to_string(),
                                p.size.to_string(),
                                p.blocks.to_string(),
                                if p.disabled { "disabled" } else { "enabled" }.to_owned(),
                            ]
                        })
                        .collect();
                    let mut text = table(&header, &rows);
                    if *show_blocks {
                        let header = ["BLOCK", "POOL", "NODE", "IN USE", "SIZE", "BORROWED"]
                            .map(str::to_owned);
                        let rows: Vec<Vec<String>> = usage
                            .blocks
                            .iter()
                            .map(|b| {
                                vec![
                                    b.cidr.clone(),
                                    b.pool.clone().unwrap_or_else(|| "-".to_owned()),
                                    b.affinity.clone().unwrap_or_else(|| "-".to_owned()),
                                    b.in_use.to_string(),
                                    b.size.to_string(),
                                    b.borrowed.to_string(),
                                ]
                            })
                            .collect();
                        text.push('\n');
                        text.push_str(&table(&header, &rows));
                    }
                    out(&text)?;
                }
            }
        }
        IpamCommand::Check { output } => {
            let report = ipam.check()?;
            match output {
                IpamOutput::Json => out(&json(&report))?,
                IpamOutput::Table => {
                    let mut text = format!(
                        "checked {} allocations and {} workload endpoints\n",
                        report.allocations, report.endpoints
                    );
                    for l in &report.leaked {
                        text.push_str(&format!(
                            "leaked: {} (handle {}, sequence {}): {}\n",
                            l.ip, l.handle, l.sequence, l.reason
                        ));
                    }
                    for l in &report.pending {
                        text.push_str(&format!(
                            "pending: {} (handle {}): {}, but it was allocated moments ago (an ADD in flight)\n",
                            l.ip, l.handle, l.reason
                        ));
                    }
                    for (block, node) in &report.orphaned_blocks {
                        text.push_str(&format!(
                            "orphaned block: {block} is affine to node {node:?}, which does not exist\n"
                        ));
                    }
                    for c in &report.conflicts {
                        text.push_str(&format!("conflict: {c}\n"));
                    }
                    if report.is_clean() {
                        text.push_str("no problems found\n");
                    }
                    out(&text)?;
                }
            }
            if !report.is_clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
        IpamCommand::Release { ip, sequence } => match ipam.release_ip(*ip, *sequence)? {
            Released::Freed { handle } => {
                out(&format!("released {ip} (held by handle {handle})\n"))?
            }
            Released::NotAllocated => {
                out(&format!("{ip} was not allocated; nothing to release\n"))?
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
