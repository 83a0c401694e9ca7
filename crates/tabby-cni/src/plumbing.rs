//! The kernel side of a workload, behind a trait so that the plugin's logic is tested without
//! root ([`FakePlumbing`]) beside the real thing ([`KernelPlumbing`], on
//! `tabby_dataplane::workload`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

/// One workload's plumbing request.
#[derive(Debug, Clone)]
pub struct WorkloadPlumb<'a> {
    /// Host-side interface name.
    pub host_interface: &'a str,
    /// The workload's network namespace.
    pub netns: &'a Path,
    /// The interface name inside.
    pub ifname: &'a str,
    /// The workload's addresses.
    pub addresses: &'a [IpAddr],
    /// MTU of the workload interface, if set.
    pub mtu: Option<u32>,
}

/// Creates, checks and removes workload interfaces.
pub trait Plumbing {
    /// Whether a network namespace exists at `netns`.
    fn netns_exists(&self, netns: &Path) -> bool;
    /// Makes the veth pair, addresses and routes inside; on failure leaves nothing behind.
    /// Returns the MAC of the interface inside.
    fn add(&self, w: &WorkloadPlumb<'_>) -> Result<Option<String>, String>;
    /// Adds the host's route to the workload's addresses, once the workload is recorded (a
    /// concurrent ADD that planned the same address and lost must not have had a route to
    /// lose).
    fn route(&self, w: &WorkloadPlumb<'_>) -> Result<(), String>;
    /// Removes the host side (and with it the workload side); nothing there is not an error.
    fn del(&self, host_interface: &str) -> Result<(), String>;
    /// Like [`Plumbing::del`], running `meanwhile` once the interface can carry nothing more
    /// (so the caller may release its addresses), possibly while the kernel is still removing
    /// it; returns once it is gone. If the interface cannot be taken out of service,
    /// `meanwhile` does not run.
    fn del_while(&self, host_interface: &str, meanwhile: &mut dyn FnMut()) -> Result<(), String> {
        self.del(host_interface)?;
        meanwhile();
        Ok(())
    }
    /// Checks the workload is plumbed as `add` left it.
    fn check(&self, w: &WorkloadPlumb<'_>) -> Result<(), String>;
}

/// In-memory plumbing for tests of the plugin's logic.
#[derive(Debug, Default)]
pub struct FakePlumbing {
    /// Namespaces that exist.
    pub namespaces: Mutex<Vec<std::path::PathBuf>>,
    /// Host interface to addresses.
    pub links: Mutex<BTreeMap<String, Vec<IpAddr>>>,
    /// When set, `add` fails with this message.
    pub fail_add: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Plumbing for FakePlumbing {
    fn netns_exists(&self, netns: &Path) -> bool {
        lock(&self.namespaces).iter().any(|n| n == netns)
    }

    fn add(&self, w: &WorkloadPlumb<'_>) -> Result<Option<String>, String> {
        if let Some(msg) = lock(&self.fail_add).clone() {
            return Err(msg);
        }
        let mut links = lock(&self.links);
        if links.contains_key(w.host_interface) {
            return Err(format!("interface {} exists", w.host_interface));
        }
        links.insert(w.host_interface.to_owned(), w.addresses.to_vec());
        Ok(Some("02:00:00:00:00:01".to_owned()))
    }

    fn route(&self, w: &WorkloadPlumb<'_>) -> Result<(), String> {
        if lock(&self.links).contains_key(w.host_interface) {
            Ok(())
        } else {
            Err(format!("no interface {}", w.host_interface))
        }
    }

    fn del(&self, host_interface: &str) -> Result<(), String> {
        lock(&self.links).remove(host_interface);
        Ok(())
    }

    fn check(&self, w: &WorkloadPlumb<'_>) -> Result<(), String> {
        match lock(&self.links).get(w.host_interface) {
            Some(a) if a == w.addresses => Ok(()),
            Some(a) => Err(format!("{} has addresses {a:?}", w.host_interface)),
            None => Err(format!("no interface {}", w.host_interface)),
        }
    }
}
