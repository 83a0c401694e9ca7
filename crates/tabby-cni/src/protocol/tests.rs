use super::*;

#[test]
fn cni_args_are_parsed_and_a_pair_without_value_is_refused() {
    let env = |k: &str| match k {
        "CNI_COMMAND" => Some("DEL".to_owned()),
        "CNI_CONTAINERID" => Some("c".to_owned()),
        "CNI_IFNAME" => Some("eth0".to_owned()),
        "CNI_PATH" => Some("/a:/b".to_owned()),
        "CNI_ARGS" => Some("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.5".to_owned()),
        _ => None,
    };
    let inv = Invocation::from_env(&env).unwrap();
    assert_eq!(inv.command, Some(Command::Del));
    assert_eq!(inv.args["K8S_POD_NAME"], "web");
    assert_eq!(inv.args["IP"], "10.0.0.5");
    assert_eq!(inv.path.len(), 2);
    let env = |k: &str| match k {
        "CNI_COMMAND" => Some("VERSION".to_owned()),
        "CNI_ARGS" => Some("oops".to_owned()),
        _ => None,
    };
    let err = Invocation::from_env(&env).unwrap_err();
    assert_eq!(err.code, code::INVALID_ENV);
    assert!(err.msg.contains("\"oops\" is not KEY=VALUE"), "{}", err.msg);
}

#[test]
fn versions_compare_numerically() {
    assert!(version_at_least("1.1.0", "1.0.0"));
    assert!(version_at_least("0.10.0", "0.4.0"));
    assert!(!version_at_least("0.3.1", "0.4.0"));
    assert!(version_at_least("0.4.0", "0.4.0"));
}

#[test]
fn the_error_structure_omits_empty_details() {
    let e = CniError::new(7, "bad");
    assert_eq!(
        e.to_json("1.0.0"),
        r#"{"cniVersion":"1.0.0","code":7,"msg":"bad"}"#
    );
    let e = e.with_details("more");
    assert!(e.to_json("1.0.0").ends_with(r#""details":"more"}"#));
}
