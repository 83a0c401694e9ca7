//! The backend conformance suite against a real etcd (Debian's `etcd-server`) that each test
//! starts itself: one member per check, then the whole suite on a 3-member cluster, and
//! compare-and-swap from several processes.

#![cfg(feature = "etcd")]

use std::process::{Command, Stdio};

use tabby_store::conformance::{self, etcd::EtcdFixture};
use tabby_store::open;

macro_rules! conformance_tests {
    ($($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let etcd = EtcdFixture::start(stringify!($check), 1);
                conformance::$check(&|| etcd.fresh());
            }
        )*
    };
}

conformance_tests!(
    crud_round_trip,
    create_of_an_existing_key_fails,
    missing_keys_are_not_found,
    stale_revisions_conflict_and_change_nothing,
    list_is_sorted_and_filtered,
    commit_is_all_or_nothing,
    commit_writes_one_revision,
    commit_refuses_duplicate_and_invalid_keys,
    revisions_increase_strictly,
    watch_from_zero_replays_history_in_order,
    watch_from_a_middle_revision_gives_only_later_changes,
    watch_filters_by_kind_and_namespace,
    list_then_watch_continues_without_gap,
    watch_delivers_live_writes_from_other_threads,
    watch_times_out_without_changes,
    watch_across_compaction,
    concurrent_cas_from_threads,
);

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
