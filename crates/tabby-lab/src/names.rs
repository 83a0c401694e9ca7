//! Names of a lab's parts. Every namespace of lab `L` is `tabby-lab-L.<part>`; lab names have
//! no dot, so one lab's prefix never matches another's.

use crate::LabError;

/// The prefix of every namespace of lab `lab`.
pub(crate) fn netns_prefix(lab: &str) -> String {
    format!("tabby-lab-{lab}.")
}

/// The namespace of a part (`fabric`, `node-1`, a workload's host interface name).
pub fn netns_name(lab: &str, part: &str) -> String {
    format!("{}{part}", netns_prefix(lab))
}

/// The container ID the lab gives a pod's sandbox in CNI calls (so its IPAM handle is
/// `k8s-pod-network.lab-<lab>-<interface>`): stable, so that DEL finds what ADD made, and
/// without dots, which CNI GC reads as the interface separator of a handle.
pub(crate) fn container_id(lab: &str, interface: &str) -> String {
    format!("lab-{lab}-{interface}")
}

/// The name of node `i` (1-based), as WorkloadEndpoints' `spec.node` and pods' `nodeName`
/// spell it.
pub(crate) fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// Lab names: 1 to 20 of `a-z`, `0-9` and `-`, starting and ending with a letter or digit
/// (they become part of namespace names and of `--name` arguments in messages).
pub fn validate_lab_name(name: &str) -> Result<(), LabError> {
    let invalid = |reason| {
        Err(LabError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 20 {
        return invalid("must be 1 to 20 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return invalid("may only hold lowercase letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return invalid("must start and end with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["demo", "t-1234-7", "a", "x9"] {
            validate_lab_name(ok).expect(ok);
        }
        for bad in [
            "",
            "Demo",
            "a.b",
            "-a",
            "a-",
            "a b",
            "abcdefghijklmnopqrstu",
        ] {
            assert!(validate_lab_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_labs_prefix_never_matches_another_labs_namespaces() {
        assert!(!netns_name("a-b", "node-1").starts_with(&netns_prefix("a")));
        assert!(netns_name("a", "node-1").starts_with(&netns_prefix("a")));
    }
}
