use super::config::{EtcdConfig, TlsFiles};
use super::keys::{Layout, prefix_end};
use crate::{Key, StoreError};

#[test]
fn urls_name_endpoints_prefix_and_tls_files() {
    let c = EtcdConfig::parse("etcd://10.0.0.1:2379,etcd-2.example:2379,[fd00::3]:2379").unwrap();
    assert_eq!(
        c.endpoints,
        ["10.0.0.1:2379", "etcd-2.example:2379", "[fd00::3]:2379"]
    );
    assert_eq!(c.prefix, "/tabby");
    assert_eq!(c.tls, None);
    assert_eq!(c.uris()[2], "http://[fd00::3]:2379");

    let c = EtcdConfig::parse("etcd://h:1/site-a//prod/").unwrap();
    assert_eq!(c.prefix, "/site-a/prod");

    let c = EtcdConfig::parse("etcds://h:2379/x?ca=/etc/ca.pem&cert=/c.pem&key=/k.pem").unwrap();
    assert_eq!(
        c.tls,
        Some(TlsFiles {
            ca: "/etc/ca.pem".into(),
            client: Some(("/c.pem".into(), "/k.pem".into())),
        })
    );
    assert_eq!(c.uris(), ["https://h:2379"]);
    assert_eq!(c.location(), "etcds://h:2379/x");
}

#[test]
fn url_typos_say_what_to_fix() {
    for (url, says) in [
        ("etcd:/h:2379", "expected etcd://"),
        ("etcd://", "no HOST:PORT"),
        ("etcd://h", "has no port"),
        ("etcd://h:", "not a number"),
        ("etcd://h:99999", "not a number"),
        ("etcd://h:2379,", "empty endpoint"),
        ("etcd://http://h:2379", "scheme of its own"),
        ("etcd://fd00::1:2379", "in brackets"),
        ("etcd://h_o st:2379", "cannot be part of a host name"),
        ("etcd://h:2379/a b", "contains ' '"),
        ("etcd://h:2379/../x", "as a path segment"),
        ("etcd://h:2379?ca=/x", "need etcds://"),
        ("etcds://h:2379", "needs ca=PATH"),
        ("etcds://h:2379?ca=/x&cert=/c", "without key="),
        ("etcds://h:2379?ca=/x&key=/k", "without cert="),
        ("etcds://h:2379?cafile=/x", "unknown option \"cafile\""),
        ("etcds://h:2379?ca", "has no value"),
        ("etcds://h:2379?ca=/a&ca=/b", "given twice"),
    ] {
        let err = EtcdConfig::parse(url).expect_err(url);
        let StoreError::InvalidUrl { url: got, reason } = &err else {
            panic!("{url}: {err:?}");
        };
        assert_eq!(got, url);
        assert!(reason.contains(says), "{url}: {reason}");
    }
}

#[test]
fn keys_round_trip_through_the_layout() {
    let layout = Layout::new("/tabby");
    for key in [
        Key::new("NetworkPolicy", "default", "allow-web"),
        Key::new("IPPool", "", "pool1"),
        Key::new("Odd/Kind", "50%", "a/b%2F"),
    ] {
        let etcd_key = layout.key(&key);
        assert!(etcd_key.starts_with("/tabby/resources/"), "{etcd_key}");
        assert_eq!(layout.parse(etcd_key.as_bytes()), Some(key));
    }
    assert_eq!(
        layout.key(&Key::new("IPPool", "", "p")),
        "/tabby/resources/IPPool//p"
    );
    for foreign in [
        "/tabby/schema",
        "/tabby/resources/Kind/ns",
        "/tabby/resources/Kind/ns/name/extra",
        "/tabby/resources/Kind/ns/bad%zz",
        "/tabby/resources//ns/name",
        "/other/resources/Kind/ns/name",
    ] {
        assert_eq!(layout.parse(foreign.as_bytes()), None, "{foreign}");
    }
}

#[test]
fn ranges_select_a_kind_or_a_kind_in_a_namespace() {
    let layout = Layout::new("/p");
    assert_eq!(layout.range(None, None), "/p/resources/");
    assert_eq!(layout.range(None, Some("ns")), "/p/resources/");
    assert_eq!(layout.range(Some("Pod"), None), "/p/resources/Pod/");
    assert_eq!(layout.range(Some("Pod"), Some("")), "/p/resources/Pod//");
    // A kind that is a prefix of another must not select it.
    let pod = layout.range(Some("Pod"), None);
    assert!(!layout.key(&Key::new("PodX", "", "a")).starts_with(&pod));
    assert_eq!(prefix_end("/p/resources/"), b"/p/resources0");
}
