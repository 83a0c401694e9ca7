//! The CNI entry: `tabby` run by a container runtime with `CNI_COMMAND` set is the network
//! plugin; under the name `tabby-ipam` (a link to the same binary) it is the IPAM plugin.
//! Everything the protocol and the plugin do lives in `tabby-cni`; this wires in the real
//! datastore backends and the kernel.

use std::ffi::OsStr;
use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use tabby_cni::kernel::KernelPlumbing;
use tabby_cni::plugin::{Mode, TabbyPlugin};
use tabby_cni::protocol::dispatch;

use crate::output::out;

/// The name the IPAM plugin is installed under.
const IPAM_NAME: &str = "tabby-ipam";

/// Whether this process is a CNI invocation: `CNI_COMMAND` is set, or the binary was run as
/// `tabby-ipam`.
pub(crate) fn is_cni() -> bool {
    std::env::var_os("CNI_COMMAND").is_some() || invoked_as_ipam()
}

fn invoked_as_ipam() -> bool {
    std::env::args_os()
        .next()
        .as_deref()
        .and_then(|a| Path::new(a).file_name())
        == Some(OsStr::new(IPAM_NAME))
}

/// Serves one CNI invocation: stdin and the environment in, a result or an error structure
/// on stdout.
pub(crate) fn main() -> ExitCode {
    let mode = if invoked_as_ipam() {
        Mode::Ipam
    } else {
        Mode::Network
    };
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin).map(|_| stdin);
    let open = |url: &str| tabby_store::open(url);
    let default_datastore = std::env::var("TABBY_DATASTORE")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(tabby_store::default_url);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let plumbing = KernelPlumbing::default();
    let plugin = TabbyPlugin {
        mode,
        open_store: &open,
        default_datastore,
        hostname,
        plumbing: &plumbing,
    };
    let env = |k: &str| std::env::var(k).ok();
    let outcome = dispatch(&env, read, &plugin);
    if out(&outcome.stdout).is_err() {
        return ExitCode::FAILURE;
    }
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
