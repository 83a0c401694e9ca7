use super::*;

#[test]
fn old_versions_get_ip_versions_and_lose_new_fields() {
    let r = CniResult {
        interfaces: vec![Interface {
            name: "eth0".into(),
            mtu: Some(1400),
            ..Interface::default()
        }],
        ips: vec![IpConfig {
            interface: Some(0),
            address: "fd00::1/128".into(),
            gateway: None,
        }],
        routes: vec![RouteConfig {
            priority: Some(5),
            ..RouteConfig::default_v6()
        }],
        dns: Dns::default(),
    };
    let old = r.to_value("0.4.0").unwrap();
    assert_eq!(old["ips"][0]["version"], "6");
    assert!(old["interfaces"][0].get("mtu").is_none());
    assert!(old["routes"][0].get("priority").is_none());
    assert!(old.get("dns").is_none());
    let new = r.to_value("1.1.0").unwrap();
    assert_eq!(new["interfaces"][0]["mtu"], 1400);
    assert_eq!(new["routes"][0]["priority"], 5);
    assert!(r.to_value("0.2.0").is_err());
    assert_eq!(r.addresses(), vec!["fd00::1".parse::<IpAddr>().unwrap()]);
}
