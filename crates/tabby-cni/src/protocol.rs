//! The CNI protocol itself, independent of what the plugin does: the environment, the
//! configuration on stdin, version negotiation, the error structure and its codes, and the
//! dispatch of a command to a [`Plugin`]. It follows the reference `skel` package where the
//! spec leaves room (which variables are required, in which order things are checked, the
//! messages), so that runtimes see the same answers as from any other plugin.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::result::CniResult;

/// The versions this plugin speaks; results are written in the one the configuration asks.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Spec error codes.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADD.
    pub const NOT_AVAILABLE: u32 = 50;
    /// Plugin-specific (100+): no address can be handed out (no usable pool, pools full).
    pub const NO_ADDRESS: u32 = 100;
    /// Plugin-specific: a requested address cannot be had (outside every pool, reserved,
    /// taken).
    pub const BAD_ADDRESS: u32 = 101;
    /// Plugin-specific: the kernel refused part of the workload's plumbing.
    pub const PLUMBING: u32 = 102;
    /// The reference library's code for an untyped internal error.
    pub const INTERNAL: u32 = 999;
}

/// A CNI error: printed as the spec's error structure on stdout, with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if .details.is_empty() { String::new() } else { format!(" ({})", .details) })]
pub struct CniError {
    /// The spec's code (0-99 well known, 100+ ours).
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// More detail, possibly empty.
    pub details: String,
}

impl CniError {
    /// An error with a code and a message.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error structure as JSON text, in `version`.
    pub fn to_json(&self, version: &str) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_string(&Out {
            cni_version: version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_default()
    }
}

/// The CNI operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Add a container to the network.
    Add,
    /// Remove it.
    Del,
    /// Check it is as ADD left it.
    Check,
    /// Report the versions spoken.
    Version,
    /// Report whether ADD can be served.
    Status,
    /// Remove what is left of attachments that are not in the valid list.
    Gc,
}

impl Command {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "VERSION" => Self::Version,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            _ => return None,
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Version => "VERSION",
            Self::Status => "STATUS",
            Self::Gc => "GC",
        })
    }
}

/// The variables in the order the reference lists missing ones.
const VARS: [&str; 7] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
    "CNI_NETNS_OVERRIDE",
];

/// Which variables a command needs (the reference skel's table, stricter than the spec).
fn required(var: &str, cmd: Option<Command>) -> bool {
    use Command::{Add, Check, Del, Gc, Status};
    match var {
        "CNI_COMMAND" => true,
        "CNI_CONTAINERID" | "CNI_IFNAME" => matches!(cmd, Some(Add | Check | Del)),
        "CNI_NETNS" => matches!(cmd, Some(Add | Check)),
        "CNI_PATH" => matches!(cmd, Some(Add | Check | Del | Gc | Status)),
        _ => false,
    }
}

/// The invocation: the CNI variables (absent ones empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The command.
    pub command: Option<Command>,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, parsed.
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH`, split.
    pub path: Vec<PathBuf>,
}

impl Invocation {
    /// Reads the variables from `env` (a lookup, so tests need not touch the process's
    /// environment), as the reference skel does.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let get = |k: &str| env(k).unwrap_or_default();
        let raw_cmd = get("CNI_COMMAND");
        let command = Command::parse(&raw_cmd);
        let missing: Vec<&str> = VARS
            .iter()
            .copied()
            .filter(|v| get(v).is_empty() && required(v, command))
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("required env variables [{}] missing", missing.join(",")),
            ));
        }
        if command.is_none() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("unknown CNI_COMMAND: {raw_cmd}"),
            ));
        }
        let mut args = BTreeMap::new();
        for pair in get("CNI_ARGS").split(';').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
                ));
            };
            args.insert(k.to_owned(), v.to_owned());
        }
        Ok(Self {
            command,
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args,
            path: std::env::split_paths(&get("CNI_PATH")).collect(),
        })
    }
}

fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks a container ID as the reference does.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    if id.is_empty() {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            "missing containerID",
        ));
    }
    if !valid_id(id) {
        return Err(
            CniError::new(code::INVALID_ENV, "invalid characters in containerID").with_details(id),
        );
    }
    Ok(())
}

/// Checks a network name as the reference does.
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::new(
            code::INVALID_NETWORK_CONFIG,
            "missing network name:",
        ));
    }
    if !valid_id(name) {
        return Err(CniError::new(
            code::INVALID_NETWORK_CONFIG,
            "invalid characters found in network name",
        )
        .with_details(name));
    }
    Ok(())
}

/// Checks an interface name as the reference does.
pub fn validate_interface_name(name: &str) -> Result<(), CniError> {
    let err = |msg: &str| CniError::new(code::INVALID_ENV, msg);
    if name.is_empty() {
        return Err(err("interface name is empty"));
    }
    if name.len() > 15 {
        return Err(err("interface name is too long")
            .with_details("interface name should be less than 16 characters"));
    }
    if name == "." || name == ".." {
        return Err(err("interface name is . or .."));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(err(
            "interface name contains / or : or whitespace characters",
        ));
    }
    Ok(())
}

/// The parts of the configuration every command needs; the plugin reads the rest from
/// [`NetConf::raw`].
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`.
    pub cni_version: String,
    /// `name`.
    pub name: String,
    /// `type`.
    pub plugin_type: String,
    /// The whole configuration object.
    pub raw: Map<String, Value>,
}

impl NetConf {
    /// Parses stdin as the reference does (code 6 for bad JSON, 7 for a bad name).
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODING_FAILURE,
                format!("error unmarshall network config: {e}"),
            )
        })?;
        let Value::Object(raw) = value else {
            return Err(CniError::new(
                code::DECODING_FAILURE,
                "error unmarshall network config: not a JSON object",
            ));
        };
        let text = |k: &str| -> Result<String, CniError> {
            match raw.get(k) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(CniError::new(
                    code::DECODING_FAILURE,
                    format!("error unmarshall network config: {k} must be a string, not {other}"),
                )),
            }
        };
        let name = text("name")?;
        if name.is_empty() {
            return Err(CniError::new(
                code::INVALID_NETWORK_CONFIG,
                "missing network name",
            ));
        }
        validate_network_name(&name)?;
        Ok(Self {
            cni_version: text("cniVersion")?,
            name,
            plugin_type: text("type")?,
            raw,
        })
    }

    /// The configuration's `prevResult`, if any.
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        match self.raw.get("prevResult") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => CniResult::from_value(v).map(Some),
        }
    }
}

/// Whether `a` is at least `b` (dotted numbers).
pub fn version_at_least(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) >= parse(b)
}

/// What a plugin does; the protocol layer calls it after every check passed.
pub trait Plugin {
    /// ADD: returns the result to print.
    fn add(&self, inv: &Invocation, conf: &NetConf) -> Result<CniResult, CniError>;
    /// DEL: must succeed when there is nothing left to delete.
    fn del(&self, inv: &Invocation, conf: &NetConf) -> Result<(), CniError>;
    /// CHECK.
    fn check(&self, inv: &Invocation, conf: &NetConf) -> Result<(), CniError>;
    /// STATUS: `Ok` when ADD can be served.
    fn status(&self, inv: &Invocation, conf: &NetConf) -> Result<(), CniError>;
    /// GC, with the attachments that must be kept (`containerID`, `ifname`).
    fn gc(
        &self,
        inv: &Invocation,
        conf: &NetConf,
        valid: &[(String, String)],
    ) -> Result<(), CniError>;
}

/// The outcome of one invocation: what goes to stdout and whether the exit is a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Text for stdout (a result, a version report, an error structure, or nothing).
    pub stdout: String,
    /// Exit status 0 or 1.
    pub success: bool,
}

/// Runs one CNI invocation: environment, stdin, dispatch, output.
pub fn dispatch(
    env: &dyn Fn(&str) -> Option<String>,
    stdin: Result<Vec<u8>, std::io::Error>,
    plugin: &dyn Plugin,
) -> Outcome {
    let mut version = String::from("1.1.0");
    match dispatch_inner(env, stdin, plugin, &mut version) {
        Ok(stdout) => Outcome {
            stdout,
            success: true,
        },
        Err(e) => Outcome {
            stdout: e.to_json(&version),
            success: false,
        },
    }
}

fn dispatch_inner(
    env: &dyn Fn(&str) -> Option<String>,
    stdin: Result<Vec<u8>, std::io::Error>,
    plugin: &dyn Plugin,
    version: &mut String,
) -> Result<String, CniError> {
    let inv = Invocation::from_env(env)?;
    let stdin = stdin
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("error reading from stdin: {e}")))?;
    let Some(command) = inv.command else {
        return Err(CniError::new(code::INVALID_ENV, "unknown CNI_COMMAND"));
    };
    if command == Command::Version {
        // The reference ignores a malformed stdin here; the answer echoes the version asked.
        let asked = serde_json::from_slice::<Value>(&stdin)
            .ok()
            .and_then(|v| {
                v.get("cniVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "1.1.0".to_owned());
        return Ok(serde_json::json!({
            "cniVersion": asked,
            "supportedVersions": SUPPORTED_VERSIONS,
        })
        .to_string());
    }
    let conf = NetConf::parse(&stdin)?;
    if !conf.cni_version.is_empty() {
        version.clone_from(&conf.cni_version);
    }
    if matches!(command, Command::Add | Command::Del | Command::Check) {
        validate_container_id(&inv.container_id)?;
        validate_interface_name(&inv.ifname)?;
    }
    match command {
        Command::Check if !version_at_least(&conf.cni_version, "0.4.0") => {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                "config version does not allow CHECK",
            ));
        }
        Command::Gc | Command::Status if !version_at_least(&conf.cni_version, "1.1.0") => {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("config version does not allow {command}"),
            ));
        }
        _ => {}
    }
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "incompatible CNI version {:?}: tabby speaks {}",
                conf.cni_version,
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    let _span = tracing::info_span!(
        "cni",
        command = %command,
        container = %inv.container_id,
        ifname = %inv.ifname,
        network = %conf.name,
    )
    .entered();
    match command {
        Command::Add => {
            let result = plugin.add(&inv, &conf)?;
            result.to_json(&conf.cni_version)
        }
        Command::Del => plugin.del(&inv, &conf).map(|()| String::new()),
        Command::Check => plugin.check(&inv, &conf).map(|()| String::new()),
        Command::Status => plugin.status(&inv, &conf).map(|()| String::new()),
        Command::Gc => {
            let valid = valid_attachments(&conf)?;
            plugin.gc(&inv, &conf, &valid).map(|()| String::new())
        }
        Command::Version => Ok(String::new()),
    }
}

/// `cni.dev/valid-attachments` of a GC request.
fn valid_attachments(conf: &NetConf) -> Result<Vec<(String, String)>, CniError> {
    let Some(list) = conf.raw.get("cni.dev/valid-attachments") else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = list else {
        return Err(CniError::new(
            code::DECODING_FAILURE,
            "cni.dev/valid-attachments must be a list",
        ));
    };
    items
        .iter()
        .map(|i| {
            let field = |k: &str| i.get(k).and_then(Value::as_str).map(str::to_owned);
            match (field("containerID"), field("ifname")) {
                (Some(c), Some(i)) => Ok((c, i)),
                _ => Err(CniError::new(
                    code::DECODING_FAILURE,
                    format!("cni.dev/valid-attachments: {i} needs containerID and ifname"),
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
