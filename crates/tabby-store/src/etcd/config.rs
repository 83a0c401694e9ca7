//! `etcd://` and `etcds://` URLs: endpoints, TLS files and the key prefix.
//!
//! `etcd[s]://HOST:PORT[,HOST:PORT...][/PREFIX][?ca=PATH&cert=PATH&key=PATH]`. The prefix
//! (default `/tabby`) lets several tabby installations share one etcd.

use std::path::PathBuf;

use crate::StoreError;

/// The key prefix when the URL names none.
pub const DEFAULT_PREFIX: &str = "/tabby";

const FORM: &str = "the form is etcd://HOST:PORT[,HOST:PORT...][/PREFIX] or \
     etcds://HOST:PORT[,...][/PREFIX]?ca=CA.pem[&cert=CLIENT.pem&key=CLIENT-KEY.pem]";

/// Where an etcd datastore lives and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `HOST:PORT` of each member to try (IPv6 hosts in brackets).
    pub endpoints: Vec<String>,
    /// TLS files, for `etcds://`.
    pub tls: Option<TlsFiles>,
    /// The key prefix: starts with `/`, no trailing `/`.
    pub prefix: String,
}

/// The files `etcds://` reads: the CA that signed the members' certificates and, when the
/// members require client certificates, the client's certificate and key (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s).
    pub ca: PathBuf,
    /// The client certificate and its private key, given together or not at all.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl EtcdConfig {
    /// Parses an `etcd://` or `etcds://` URL; [`StoreError::InvalidUrl`] says what to fix.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("etcds://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("etcd://") {
            (false, rest)
        } else {
            return Err(invalid(format!("expected etcd:// or etcds://; {FORM}")));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        if rest.contains("://") {
            return Err(invalid(format!(
                "an endpoint has a scheme of its own; list bare HOST:PORT after the one etcd:// ({FORM})"
            )));
        }
        let (hosts, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if hosts.is_empty() {
            return Err(invalid(format!("no HOST:PORT; {FORM}")));
        }
        let endpoints = hosts
            .split(',')
            .map(|h| check_endpoint(h).map_err(&invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let prefix = normalise_prefix(prefix).map_err(&invalid)?;

        let (mut ca, mut cert, mut key) = (None, None, None);
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let Some((name, value)) = pair.split_once('=') else {
                return Err(invalid(format!(
                    "option {pair:?} has no value (write {pair}=PATH)"
                )));
            };
            if value.is_empty() {
                return Err(invalid(format!("option {name} has an empty path")));
            }
            let slot = match name {
                "ca" => &mut ca,
                "cert" => &mut cert,
                "key" => &mut key,
                other => {
                    return Err(invalid(format!(
                        "unknown option {other:?}; the options are ca, cert and key (TLS files, etcds:// only)"
                    )));
                }
            };
            if slot.replace(PathBuf::from(value)).is_some() {
                return Err(invalid(format!("option {name} is given twice")));
            }
        }
        let tls = if tls {
            let Some(ca) = ca else {
                return Err(invalid(
                    "etcds:// needs ca=PATH, the CA certificate that signed the etcd members' certificates"
                        .to_owned(),
                ));
            };
            let client = match (cert, key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(invalid(
                        "cert= is given without key=: a client certificate needs its private key"
                            .to_owned(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "key= is given without cert=: a private key needs its client certificate"
                            .to_owned(),
                    ));
                }
            };
            Some(TlsFiles { ca, client })
        } else {
            if ca.is_some() || cert.is_some() || key.is_some() {
                return Err(invalid(
                    "TLS files (ca, cert, key) need etcds://, not etcd://".to_owned(),
                ));
            }
            None
        };
        Ok(Self {
            endpoints,
            tls,
            prefix,
        })
    }

    /// The endpoints as the gRPC client wants them (`http://` or `https://`).
    pub(crate) fn uris(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect()
    }

    /// How errors name this datastore: the endpoints and the prefix.
    pub(crate) fn location(&self) -> String {
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://{}{}", self.endpoints.join(","), self.prefix)
    }
}

/// Checks one `HOST:PORT`.
fn check_endpoint(endpoint: &str) -> Result<String, String> {
    if endpoint.is_empty() {
        return Err(format!("an empty endpoint between commas; {FORM}"));
    }
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!(
                "endpoint {endpoint:?}: an IPv6 address needs its closing ]"
            ));
        };
        let port = after.strip_prefix(':').ok_or_else(|| {
            format!("endpoint {endpoint:?} has no port (etcd's client port is usually 2379: [{host}]:2379)")
        })?;
        (host, port)
    } else {
        match endpoint.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!(
                    "endpoint {endpoint:?}: write an IPv6 address in brackets, as [ADDRESS]:PORT"
                ));
            }
            Some((host, port)) => (host, port),
            None => {
                return Err(format!(
                    "endpoint {endpoint:?} has no port (etcd's client port is usually 2379: {endpoint}:2379)"
                ));
            }
        }
    };
    if host.is_empty() {
        return Err(format!("endpoint {endpoint:?} has no host"));
    }
    if let Some(bad) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
    {
        return Err(format!(
            "endpoint {endpoint:?}: {bad:?} cannot be part of a host name"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(endpoint.to_owned()),
        _ => Err(format!(
            "endpoint {endpoint:?}: port {port:?} is not a number from 1 to 65535"
        )),
    }
}

/// `""` → the default; otherwise one leading `/`, no trailing or doubled `/`, and only
/// characters that need no escaping anywhere (letters, digits, `. _ -`).
fn normalise_prefix(prefix: &str) -> Result<String, String> {
    let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Ok(DEFAULT_PREFIX.to_owned());
    }
    for part in &parts {
        if let Some(bad) = part
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "the key prefix {prefix:?} contains {bad:?}; use letters, digits, '.', '_', '-' and '/'"
            ));
        }
        if *part == "." || *part == ".." {
            return Err(format!(
                "the key prefix {prefix:?} contains {part:?} as a path segment"
            ));
        }
    }
    Ok(format!("/{}", parts.join("/")))
}
