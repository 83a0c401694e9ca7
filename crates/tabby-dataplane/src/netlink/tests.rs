use std::future::Future;
use std::task::{Context, Poll, Waker};

use super::{FakeNetlink, Netlink, NetlinkError, Route, WORKLOAD_HOST_MAC};

/// The fake never waits, so its futures finish on the first poll.
fn now<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the fake does not wait"),
    }
}

fn route(dst: &str, dev: &str) -> Route {
    Route {
        dst: dst.parse().expect("valid"),
        dev: Some(dev.to_owned()),
        gateway: None,
        scope_link: true,
        onlink: false,
    }
}

#[test]
fn fake_plumbs_a_workload_and_deleting_the_link_drops_its_routes() {
    let nl = FakeNetlink::new();
    now(nl.add_veth("tb1", "tb1p", Some("/run/netns/x".as_ref()))).expect("veth");
    now(nl.set_mac("tb1", WORKLOAD_HOST_MAC)).expect("mac");
    now(nl.set_up("tb1")).expect("up");
    now(nl.replace_route(&route("10.0.0.1/32", "tb1"))).expect("route");
    // The peer went to another namespace, so it is not here.
    assert_eq!(now(nl.link_index("tb1p")).expect("lookup"), None);
    assert!(nl.state().links["tb1"].up);
    assert_eq!(now(nl.tabby_routes()).expect("routes").len(), 1);
    now(nl.delete_link("tb1")).expect("delete");
    assert!(now(nl.tabby_routes()).expect("routes").is_empty());
}

#[test]
fn fake_refuses_what_the_kernel_refuses() {
    let nl = FakeNetlink::new();
    assert!(matches!(
        now(nl.replace_route(&route("10.0.0.1/32", "nope"))),
        Err(NetlinkError::NoSuchLink(n)) if n == "nope"
    ));
    nl.add_link("eth0");
    assert!(now(nl.add_veth("eth0", "p", None)).is_err());
    // Deleting a route that is not there is not an error.
    now(nl.delete_route("10.9.9.9/32".parse().expect("valid"))).expect("idempotent");
}
