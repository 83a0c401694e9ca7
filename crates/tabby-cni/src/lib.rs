//! The CNI plugin: the protocol (spec 1.1: ADD, DEL, CHECK, VERSION, STATUS, GC; results in
//! 0.3.x/0.4.0, 1.0.0 and 1.1.0; the spec's error structure and codes) and what tabby does for
//! each command: addresses from `tabby-ipam`, the workload's veth through a [`Plumbing`], and
//! the workload's one record that the agent then enforces policy on (its Pod when the
//! datastore holds it, else a WorkloadEndpoint).
//!
//! It is handed the datastore (a [`tabby_store::Datastore`] opener) and the plumbing; it must
//! not depend on a datastore backend or on kube/HTTP code. A runtime waits on every call, so
//! nothing here starts threads or runtimes it does not need.
//!
//! Key types: [`protocol::dispatch`] (one invocation, environment and stdin to stdout and
//! exit status), [`protocol::Plugin`] (the commands), [`plugin::TabbyPlugin`] (tabby's
//! commands), [`kernel::KernelPlumbing`] (the real veth, on `tabby_dataplane::workload`),
//! [`result::CniResult`], [`config::TabbyConf`].

pub mod config;
pub mod kernel;
pub mod plugin;
pub mod plumbing;
pub mod protocol;
pub mod result;

pub use crate::plumbing::{FakePlumbing, Plumbing, WorkloadPlumb};
