//! Datastore URLs: which backend, where.

use std::path::PathBuf;

use crate::sqlite::SqliteStore;
use crate::{Datastore, StoreError};

const ACCEPTED: &str = "accepted forms are sqlite:PATH (for example sqlite:/var/lib/tabby/tabby.db), \
     etcd://HOST:PORT[,HOST:PORT...][/PREFIX] and etcds://HOST:PORT[,...][/PREFIX]?ca=PATH[&cert=PATH&key=PATH]";

/// Where the datastore lives, parsed from a URL.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    Sqlite(PathBuf),
    /// The whole URL, parsed by the etcd backend.
    #[cfg(feature = "etcd")]
    Etcd,
}

fn parse(url: &str) -> Result<Location, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(invalid(&format!("no scheme; {ACCEPTED}")));
    };
    match scheme {
        "sqlite" => {
            // `sqlite:///abs/path` is the URL spelling of `sqlite:/abs/path`.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(invalid(&format!("no file path; {ACCEPTED}")));
            }
            if path == ":memory:" || path.starts_with("file:") {
                return Err(invalid(&format!(
                    "the datastore must be a file that several processes can share; {ACCEPTED}"
                )));
            }
            Ok(Location::Sqlite(PathBuf::from(path)))
        }
        #[cfg(feature = "etcd")]
        "etcd" | "etcds" => {
            crate::etcd::EtcdConfig::parse(url)?;
            Ok(Location::Etcd)
        }
        #[cfg(not(feature = "etcd"))]
        "etcd" | "etcds" => Err(StoreError::NotBuilt {
            scheme: scheme.to_owned(),
        }),
        _ => Err(invalid(&format!("unknown scheme {scheme:?}; {ACCEPTED}"))),
    }
}

/// Opens the datastore a URL names: `sqlite:PATH` (also `sqlite://PATH`), created with its
/// directory on first use, or `etcd://...`/`etcds://...` (see [`crate::etcd::EtcdConfig`]).
///
/// Without the `etcd` feature, etcd URLs give [`StoreError::NotBuilt`]; a URL that cannot be
/// used gives [`StoreError::InvalidUrl`] saying why.
pub fn open(url: &str) -> Result<Box<dyn Datastore>, StoreError> {
    match parse(url)? {
        Location::Sqlite(path) => Ok(Box::new(SqliteStore::open(path)?)),
        #[cfg(feature = "etcd")]
        Location::Etcd => Ok(Box::new(crate::etcd::EtcdStore::open(url)?)),
    }
}

/// The datastore URL to use when none is given: `sqlite:/var/lib/tabby/tabby.db` for root,
/// otherwise a file under `$XDG_DATA_HOME` (or `~/.local/share`).
pub fn default_url() -> String {
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let euid = status.as_deref().and_then(effective_uid);
    let xdg = std::env::var("XDG_DATA_HOME").ok();
    let home = std::env::var("HOME").ok();
    default_url_for(euid, xdg.as_deref(), home.as_deref())
}

/// The effective uid from the text of `/proc/self/status` (its `Uid:` line holds the real,
/// effective, saved and filesystem uids).
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn default_url_for(euid: Option<u32>, xdg_data_home: Option<&str>, home: Option<&str>) -> String {
    const SYSTEM: &str = "sqlite:/var/lib/tabby/tabby.db";
    if euid == Some(0) {
        return SYSTEM.to_owned();
    }
    // The XDG spec says to ignore a relative XDG_DATA_HOME.
    if let Some(xdg) = xdg_data_home.filter(|d| d.starts_with('/')) {
        return format!("sqlite:{}/tabby/tabby.db", xdg.trim_end_matches('/'));
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => format!(
            "sqlite:{}/.local/share/tabby/tabby.db",
            home.trim_end_matches('/')
        ),
        // Without a home there is no per-user place; the system path gives a clear
        // permission error rather than a file in whatever the current directory is.
        None => SYSTEM.to_owned(),
    }
}

#[cfg(test)]
mod tests;
