//! The `tabby` command: argument parsing and output only. Resource semantics live in
//! `tabby-client`, the model in `tabby-model`, storage in `tabby-store`.

mod cli;
mod cni;
mod datastore;
mod input;
mod ipam;
mod lab;
mod node;
mod output;
mod policy;
mod resources;
mod selector;

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _};

use crate::cli::{Cli, Command};

// The agent keeps hundreds of thousands of small objects and churns them on every update;
// mimalloc makes the calc engine about a third faster than glibc's allocator
// (docs/benchmarks.md, calc engine).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A container runtime runs the binary as its CNI plugin: no arguments, the request in
    // the environment and on stdin.
    if cni::is_cni() {
        init_tracing(0);
        return cni::main();
    }
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(cli.verbose);
    // A lab has its own datastore unless --datastore is given on its command line: an
    // exported TABBY_DATASTORE (the host's real one) must not fill up with lab resources.
    let lab_datastore = cli
        .datastore
        .as_deref()
        .filter(|_| matches.value_source("datastore") == Some(ValueSource::CommandLine));
    let result = match &cli.command {
        Command::Selector(cmd) => selector::run(cmd),
        Command::Policy(cmd) => policy::run(cli.datastore.as_deref(), cmd),
        Command::Node(cmd) => node::run(cli.datastore.as_deref(), cmd),
        Command::Ipam(cmd) => ipam::run(cli.datastore.as_deref(), cmd),
        Command::Lab(cmd) => lab::run(lab_datastore, cmd),
        Command::Datastore(cmd) => datastore::run(cli.datastore.as_deref(), cmd),
        cmd => resources::run(&cli, cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TABBY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
