use super::*;

#[test]
fn port_ranges_must_not_be_reversed() {
    assert_eq!(
        PortSpec::parse(&IntOrString::String("90:80".into())),
        Err("range 90:80 is reversed".into())
    );
    assert_eq!(
        PortSpec::parse(&IntOrString::String("80:90".into())),
        Ok(PortSpec::Range(80, 90))
    );
}

#[test]
fn ports_accept_numbers_strings_and_names() {
    assert_eq!(
        PortSpec::parse(&IntOrString::Int(443)),
        Ok(PortSpec::Number(443))
    );
    assert_eq!(
        PortSpec::parse(&IntOrString::String("8080".into())),
        Ok(PortSpec::Number(8080))
    );
    assert_eq!(
        PortSpec::parse(&IntOrString::String("http".into())),
        Ok(PortSpec::Named("http".into()))
    );
    assert!(PortSpec::parse(&IntOrString::Int(70000)).is_err());
    assert!(PortSpec::parse(&IntOrString::String("70000".into())).is_err());
    assert!(PortSpec::parse(&IntOrString::String("Bad_Name".into())).is_err());
}

#[test]
fn protocols_parse_by_name_and_number() {
    assert_eq!(
        Protocol::parse(&IntOrString::String("TCP".into())),
        Ok(Protocol::Tcp)
    );
    assert_eq!(Protocol::parse(&IntOrString::Int(17)), Ok(Protocol::Udp));
    assert_eq!(
        Protocol::parse(&IntOrString::Int(47)),
        Ok(Protocol::Number(47))
    );
    assert!(Protocol::parse(&IntOrString::Int(0)).is_err());
    assert!(Protocol::parse(&IntOrString::String("TPC".into())).is_err());
}

#[test]
fn as_numbers_accept_plain_and_asdot() {
    assert_eq!(parse_as_number("64512"), Ok(64512));
    assert_eq!(parse_as_number("1.10"), Ok(65546));
    assert!(parse_as_number("0").is_err());
    assert!(parse_as_number("x").is_err());
}

#[test]
fn label_keys_follow_kubernetes_rules() {
    assert!(label_key("app").is_ok());
    assert!(label_key("projectcalico.org/namespace").is_ok());
    assert!(label_key("-bad").is_err());
    assert!(label_key("Bad Prefix/x").is_err());
    assert!(label_value("").is_ok());
    assert!(label_value("v1.2_x").is_ok());
    assert!(label_value(&"x".repeat(64)).is_err());
}

#[test]
fn masked_cidrs_reject_host_bits() {
    assert!(parse_masked_cidr("10.0.0.0/16").is_ok());
    let e = parse_masked_cidr("10.0.0.1/16").unwrap_err();
    assert!(e.contains("did you mean 10.0.0.0/16"), "{e}");
}

#[test]
fn durations_parse_go_style() {
    assert_eq!(parse_duration_secs("1h30m"), Some(5400.0));
    assert_eq!(parse_duration_secs("90s"), Some(90.0));
    assert_eq!(parse_duration_secs("1.5s"), Some(1.5));
    assert_eq!(parse_duration_secs("5"), None);
    assert_eq!(parse_duration_secs(""), None);
}
