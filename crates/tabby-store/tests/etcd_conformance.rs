//! The backend conformance suite against a real etcd (Debian's `etcd-server`) that each test
//! starts itself: one member per check, then the whole suite on a 3-member cluster, and
//! compare-and-swap from several processes.

#![cfg(feature = "etcd")]

use std::process::{Command, Stdio};

use tabby_store::conformance::{self, etcd::EtcdFixture};
use tabby_store::open;

tabby_store::conformance_tests!(|tag| EtcdFixture::start(tag, 1), |etcd| etcd.fresh());

/// Every check, in order, each under its own prefix of one 3-member cluster reached through
/// all of its members.
#[test]
fn a_three_member_cluster_passes_the_whole_suite() {
    let etcd = EtcdFixture::start("suite3", 3);
    conformance::run_all(&|| etcd.fresh());
}

const CHILD_URL: &str = "TABBY_STORE_TEST_ETCD_URL";
const CHILD_INCREMENTS: &str = "TABBY_STORE_TEST_CAS_INCREMENTS";

/// The child side of `four_processes_increment_one_counter_by_cas`; without its environment
/// (an ordinary test run) it does nothing.
#[test]
fn cas_child_worker() {
    let (Ok(url), Ok(increments)) = (std::env::var(CHILD_URL), std::env::var(CHILD_INCREMENTS))
    else {
        return;
    };
    let store = open(&url).expect("the child must open the parent's store");
    conformance::cas_worker(&*store, increments.parse().expect("an increment count"));
}

#[test]
fn four_processes_increment_one_counter_by_cas() {
    let etcd = EtcdFixture::start("multi-process-cas", 3);
    let url = etcd.url(&etcd.fresh_prefix());
    let store = open(&url).expect("open");
    let exe = std::env::current_exe().expect("the test binary's path");
    conformance::multi_process_cas(&*store, 4, 100, &mut |_| {
        Command::new(&exe)
            .args([
                "--exact",
                "cas_child_worker",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD_URL, &url)
            .env(CHILD_INCREMENTS, "100")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("re-executing the test binary")
    });
}
