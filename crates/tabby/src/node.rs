//! `tabby node run`: open the datastore and hand over to the agent in `tabby-node`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use tabby_node::{AgentConfig, Backoff};

use crate::cli::{NodeCommand, NodeRunArgs};

pub(crate) fn run(datastore: Option<&str>, cmd: &NodeCommand) -> Result<ExitCode> {
    match cmd {
        NodeCommand::Run(args) => run_agent(datastore, args),
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
    // The datastore may not be up yet when the host boots: wait for it rather than exit.
    let mut backoff = Backoff::default();
    let store = loop {
        match tabby_store::open(&url) {
            Ok(s) => break s,
            Err(err @ tabby_store::StoreError::InvalidUrl { .. }) => return Err(err.into()),
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(%url, error = %err, retry_in = ?delay, "cannot open the datastore");
                std::thread::sleep(delay);
            }
        }
    };
    let config = AgentConfig {
        node,
        metrics_addr: args.metrics_addr,
        lock_dir: args.lock_dir.clone(),
    };
    tabby_node::agent::run(&config, Arc::from(store))
        .with_context(|| format!("tabby node run --name {}", config.node))?;
    Ok(ExitCode::SUCCESS)
}
