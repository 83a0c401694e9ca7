//! `lab down`: removes every process, namespace and file of a lab, found from the namespaces
//! and the folder themselves, so that it also cleans up after a crash or a half-built lab.

use std::collections::HashSet;
use std::path::Path;

use tabby_dataplane::netns::{self, NETNS_DIR};

use crate::fabric::lab_namespaces;
use crate::state::StateFile;
use crate::tor;
use crate::{LabConfig, LabError, process, validate_lab_name};

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownReport {
    /// Processes stopped.
    pub processes: usize,
    /// Namespaces removed.
    pub namespaces: usize,
    /// Whether the lab's folder was removed.
    pub folder: bool,
}

impl DownReport {
    /// Whether there was nothing of the lab to remove.
    pub fn nothing(&self) -> bool {
        *self == Self::default()
    }
}

/// Removes lab `name`. A lab that does not exist is not an error: the report says that
/// nothing was found.
pub fn down(config: &LabConfig, name: &str) -> Result<DownReport, LabError> {
    validate_lab_name(name)?;
    let lock = StateFile::lock_existing(&config.root, name)?;
    let namespaces = lab_namespaces(name);
    let ids: HashSet<process::NsId> = namespaces
        .iter()
        .filter_map(|n| process::ns_id(&Path::new(NETNS_DIR).join(n)))
        .collect();
    let pids = process::processes_in(&ids);
    process::stop_all(&pids);
    tor::cleanup(name);
    let mut report = DownReport {
        processes: pids.len(),
        ..DownReport::default()
    };
    let mut failed = Vec::new();
    for ns in &namespaces {
        match netns::delete(ns) {
            Ok(()) => report.namespaces += 1,
            Err(err) => failed.push(err),
        }
    }
    if let Some(lock) = lock {
        let dir = lock.dir().to_owned();
        drop(lock);
        std::fs::remove_dir_all(&dir).map_err(LabError::io("remove", &dir))?;
        report.folder = true;
    }
    if let Some(err) = failed.into_iter().next() {
        return Err(err.into());
    }
    tracing::info!(lab = %name, ?report, "lab down");
    Ok(report)
}
