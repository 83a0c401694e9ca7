use std::cell::RefCell;
use std::path::Path;

use super::*;
use crate::netlink::FakeNetlink;

#[derive(Default)]
struct RecordedSysctls(RefCell<Vec<(String, String)>>);

impl Sysctls for RecordedSysctls {
    fn write(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        self.0.borrow_mut().push((key.to_owned(), value.to_owned()));
        Ok(())
    }
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn both_ends_are_configured_as_calico_does() {
    let host = FakeNetlink::new();
    let inside = FakeNetlink::new();
    inside.add_link("lo");
    // The kernel moves the peer into the workload namespace; the fake is told so.
    inside.add_link("tbabcdef12345x");
    let sysctls = RecordedSysctls::default();
    let inside_sysctls = RecordedSysctls::default();
    let addresses: [IpAddr; 2] = ["10.65.0.7".parse().unwrap(), "fd00::7".parse().unwrap()];
    let w = Workload {
        interface: "tbabcdef12345",
        netns: Path::new("/run/netns/wl"),
        inside: WORKLOAD_INTERFACE,
        addresses: &addresses,
        mtu: Some(1400),
    };
    block_on(plumb(&host, &sysctls, &inside, &inside_sysctls, &w)).expect("plumbed");

    let h = host.state();
    let link = &h.links["tbabcdef12345"];
    assert_eq!(link.mac, Some(WORKLOAD_HOST_MAC));
    assert_eq!(link.mtu, Some(1400));
    assert!(link.up);
    assert!(link.addrs.is_empty(), "the host side has no address");
    assert!(
        sysctls
            .0
            .borrow()
            .iter()
            .any(|(k, v)| k == "net/ipv4/conf/tbabcdef12345/proxy_arp" && v == "1"),
        "{:?}",
        sysctls.0.borrow()
    );
    for key in [
        "net/ipv6/conf/tbabcdef12345/accept_ra",
        "net/ipv6/conf/tbabcdef12345/accept_dad",
    ] {
        assert!(
            sysctls.0.borrow().iter().any(|(k, v)| k == key && v == "0"),
            "{key}: {:?}",
            sysctls.0.borrow()
        );
    }
    assert_eq!(
        *inside_sysctls.0.borrow(),
        [(
            format!("net/ipv6/conf/{WORKLOAD_INTERFACE}/accept_dad"),
            "0".to_owned()
        )],
        "the workload side's address is usable at once"
    );
    assert!(h.routes.is_empty(), "the host route is the agent's");

    let i = inside.state();
    let eth0 = &i.links[WORKLOAD_INTERFACE];
    assert!(eth0.up);
    assert_eq!(eth0.mtu, Some(1400));
    assert_eq!(
        eth0.addrs,
        [
            "10.65.0.7/32".parse::<IpNet>().unwrap(),
            "fd00::7/128".parse().unwrap()
        ]
    );
    let routes: Vec<(String, Option<IpAddr>)> = i
        .routes
        .values()
        .map(|r| (r.dst.to_string(), r.gateway))
        .collect();
    assert_eq!(
        routes,
        [
            ("0.0.0.0/0".to_owned(), Some(IpAddr::V4(GATEWAY_V4))),
            ("169.254.1.1/32".to_owned(), None),
            ("::/0".to_owned(), Some(IpAddr::V6(GATEWAY_V6))),
        ]
    );
}

#[test]
fn a_failure_leaves_no_veth_behind() {
    let host = FakeNetlink::new();
    // No peer inside: the rename fails half way.
    let inside = FakeNetlink::new();
    let addresses: [IpAddr; 1] = ["10.65.0.7".parse().unwrap()];
    let w = Workload {
        interface: "tbabcdef12345",
        netns: Path::new("/run/netns/wl"),
        inside: WORKLOAD_INTERFACE,
        addresses: &addresses,
        mtu: None,
    };
    let err = block_on(plumb(
        &host,
        &RecordedSysctls::default(),
        &inside,
        &RecordedSysctls::default(),
        &w,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("tbabcdef12345"), "{err}");
    assert!(host.state().links.is_empty(), "{:?}", host.state().links);
}

#[test]
fn bad_requests_are_refused_before_any_write() {
    let host = FakeNetlink::new();
    let addresses: [IpAddr; 1] = ["10.65.0.7".parse().unwrap()];
    for (interface, addrs) in [
        ("", &addresses[..]),
        ("tb-much-too-long-name", &addresses[..]),
        ("tbok", &[][..]),
    ] {
        let w = Workload {
            interface,
            netns: Path::new("/run/netns/wl"),
            inside: WORKLOAD_INTERFACE,
            addresses: addrs,
            mtu: None,
        };
        let err = block_on(plumb(
            &host,
            &RecordedSysctls::default(),
            &host,
            &RecordedSysctls::default(),
            &w,
        ))
        .unwrap_err();
        assert!(matches!(err, PlumbError::Invalid { .. }), "{err}");
    }
    assert!(host.state().links.is_empty());
}

#[test]
fn unplumbing_twice_is_fine() {
    let host = FakeNetlink::new();
    host.add_link("tbgone");
    block_on(unplumb(&host, "tbgone")).expect("first");
    block_on(unplumb(&host, "tbgone")).expect("second");
}
