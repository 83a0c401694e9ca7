use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tabby_dataplane::FakeNetlink;

use super::*;
use crate::test_support::{CLUSTER, Flaky, SharedNft, put, sqlite};

const STEP: Duration = Duration::from_millis(50);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// Steps until `done` holds, failing after a bounded number of rounds.
fn step_until(
    agent: &mut Agent<FakeNetlink>,
    rt: &tokio::runtime::Runtime,
    what: &str,
    done: impl Fn(&Agent<FakeNetlink>) -> bool,
) {
    for _ in 0..100 {
        agent.step(rt, STEP);
        if done(agent) {
            return;
        }
    }
    panic!("gave up waiting for: {what}");
}

#[test]
fn enforces_keeps_state_while_the_datastore_is_away_and_takes_over_after() {
    let (_dir, sqlite) = sqlite();
    put(sqlite.as_ref(), CLUSTER);
    let down = Arc::new(AtomicBool::new(false));
    let store: Arc<dyn Datastore> = Arc::new(Flaky {
        inner: sqlite.clone(),
        down: down.clone(),
    });
    let nft = SharedNft::default();
    let netlink = FakeNetlink::new();
    netlink.add_link("tba");
    netlink.add_link("tbb");
    let metrics = Arc::new(Metrics::default());
    let dp = Dataplane::new(Config::default(), Box::new(nft.clone()), netlink.clone());
    let mut agent = Agent::new(Syncer::new(store, "node-1"), dp, metrics.clone()).with_backoff(
        Backoff::new(Duration::from_millis(1), Duration::from_millis(5)),
    );
    let rt = runtime();

    assert!(!metrics.ready());
    agent.step(&rt, STEP);
    assert!(metrics.ready() && metrics.in_sync());
    let scripts = nft.scripts();
    assert_eq!(scripts.len(), 1);
    assert!(scripts[0].contains("b-from-a"), "{}", scripts[0]);
    let routes: Vec<String> = netlink
        .state()
        .routes
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(routes, ["10.65.0.1/32", "10.65.0.2/32"]);
    assert!(metrics.render().contains("tabby_local_endpoints 2"));

    // The datastore goes away: nothing is written, the agent enforces the last state but is
    // neither in sync nor ready, and says why.
    down.store(true, Ordering::SeqCst);
    agent.step(&rt, STEP);
    agent.step(&rt, STEP);
    assert_eq!(nft.scripts().len(), 1);
    assert!(metrics.programmed_once() && !metrics.ready() && !metrics.in_sync());
    let status = metrics.datastore_status();
    assert!(
        status
            .error
            .as_deref()
            .is_some_and(|e| e.contains("connection lost")),
        "{status:?}"
    );
    assert!(status.retry_in_ms.is_some(), "{status:?}");
    assert!(
        metrics
            .not_ready_reason()
            .is_some_and(|r| r.contains("still enforcing")),
        "{:?}",
        metrics.not_ready_reason()
    );
    assert_eq!(netlink.state().routes.len(), 2);

    // A change made meanwhile arrives by the resync, as one full take-over script.
    sqlite
        .delete(
            &tabby_store::Key::new("NetworkPolicy", "lab", "b-from-a"),
            None,
        )
        .expect("delete");
    sqlite
        .delete(
            &tabby_store::Key::new("WorkloadEndpoint", "lab", "node--1-k8s-a-eth0"),
            None,
        )
        .expect("delete");
    down.store(false, Ordering::SeqCst);
    step_until(&mut agent, &rt, "the resync's write", |_| {
        nft.scripts().len() == 2
    });
    let last = nft.scripts().pop().expect("a script");
    assert!(
        last.contains("delete table inet tabby"),
        "a full script: {last}"
    );
    assert!(!last.contains("b-from-a"), "{last}");
    let routes: Vec<String> = netlink
        .state()
        .routes
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        routes,
        ["10.65.0.2/32"],
        "the stale route is reconciled away"
    );
    assert!(metrics.in_sync() && metrics.ready());
    assert_eq!(metrics.datastore_status().error, None);
    assert!(metrics.render().contains("tabby_resyncs_total 2"));
    assert!(
        metrics
            .render()
            .contains("tabby_errors_total{kind=\"datastore\"} 2")
    );
}

#[test]
fn a_refused_write_is_retried_as_a_full_script() {
    let (_dir, sqlite) = sqlite();
    put(sqlite.as_ref(), CLUSTER);
    let nft = SharedNft::default();
    let netlink = FakeNetlink::new();
    netlink.add_link("tba");
    netlink.add_link("tbb");
    let metrics = Arc::new(Metrics::default());
    let dp = Dataplane::new(Config::default(), Box::new(nft.clone()), netlink);
    let mut agent =
        Agent::new(Syncer::new(sqlite.clone(), "node-1"), dp, metrics.clone()).with_backoff(
            Backoff::new(Duration::from_millis(1), Duration::from_millis(5)),
        );
    let rt = runtime();
    agent.step(&rt, STEP);
    assert_eq!(nft.scripts().len(), 1);

    nft.fail_next("refused");
    sqlite
        .delete(
            &tabby_store::Key::new("NetworkPolicy", "lab", "b-from-a"),
            None,
        )
        .expect("delete");
    step_until(&mut agent, &rt, "the failed write", |_| {
        nft.scripts().len() == 2
    });
    assert!(agent.dataplane().has_pending());
    assert!(
        metrics
            .render()
            .contains("tabby_errors_total{kind=\"nft\"} 1")
    );
    step_until(&mut agent, &rt, "the retry", |_| nft.scripts().len() == 3);
    let scripts = nft.scripts();
    assert!(
        !scripts[1].contains("delete table inet tabby"),
        "first an incremental write"
    );
    assert!(
        scripts[2].contains("delete table inet tabby"),
        "then the whole table: {}",
        scripts[2]
    );
    assert!(!agent.dataplane().has_pending());
}
