//! The CNI conformance vectors in `../shared/conformance/cni/`, read in place: the reference
//! skel's errors, the reference validation of IDs and names, and result conversion between
//! versions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use tabby_cni::protocol::{
    CniError, Invocation, NetConf, Plugin, dispatch, validate_container_id,
    validate_interface_name, validate_network_name,
};
use tabby_cni::result::{CniResult, IpConfig};
use tabby_test_util::{conformance_dir, read_jsonl};

fn dir(test: &str) -> Option<PathBuf> {
    conformance_dir(test, "cni")
}

/// A plugin whose every command returns a fixed answer.
struct Fixed(Result<(), CniError>);

impl Plugin for Fixed {
    fn add(&self, _: &Invocation, _: &NetConf) -> Result<CniResult, CniError> {
        self.0.clone().map(|()| CniResult::default())
    }
    fn del(&self, _: &Invocation, _: &NetConf) -> Result<(), CniError> {
        self.0.clone()
    }
    fn check(&self, _: &Invocation, _: &NetConf) -> Result<(), CniError> {
        self.0.clone()
    }
    fn status(&self, _: &Invocation, _: &NetConf) -> Result<(), CniError> {
        self.0.clone()
    }
    fn gc(&self, _: &Invocation, _: &NetConf, _: &[(String, String)]) -> Result<(), CniError> {
        self.0.clone()
    }
}

/// Runs one invocation; returns the parsed error structure (or panics on success).
fn run_err(
    env: &BTreeMap<String, String>,
    stdin: Result<Vec<u8>, std::io::Error>,
    plugin: &Fixed,
) -> Value {
    let lookup = |k: &str| env.get(k).cloned();
    let out = dispatch(&lookup, stdin, plugin);
    assert!(
        !out.success,
        "expected a failure for {env:?}, got {}",
        out.stdout
    );
    serde_json::from_str(&out.stdout).expect("the error structure is JSON")
}

#[test]
fn skel_error_vectors() {
    let Some(dir) = dir("skel_error_vectors") else {
        return;
    };
    let stdin_default = br#"{"name":"skel-test","cniVersion":"1.1.0","some":"config"}"#.to_vec();
    for (line, v) in read_jsonl(&dir.join("cni_skel_error_vectors.jsonl")) {
        let mut env: BTreeMap<String, String> = [
            ("CNI_CONTAINERID", "some-container-id"),
            ("CNI_NETNS", "/some/netns/path"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/some/cni/path"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        if let Some(extra) = v["env"].as_object() {
            for (k, val) in extra {
                env.insert(k.clone(), val.as_str().unwrap().to_owned());
            }
        }
        match &v["env_missing"] {
            Value::String(s) => {
                env.remove(s);
            }
            Value::Array(list) => {
                for s in list {
                    env.remove(s.as_str().unwrap());
                }
            }
            _ => {}
        }
        let stdin = match &v["stdin"] {
            Value::Null => stdin_default.clone(),
            other => other.to_string().into_bytes(),
        };
        let plugin = match v["callback_returns_typed_error"].as_object() {
            Some(e) => Fixed(Err(CniError::new(
                u32::try_from(e["code"].as_u64().unwrap()).unwrap(),
                e["msg"].as_str().unwrap(),
            ))),
            None => Fixed(Ok(())),
        };
        let want = &v["error"];
        let commands: Vec<&str> = match v["command"].as_str() {
            Some("GC or STATUS") => vec!["GC", "STATUS"],
            Some(c) => vec![c],
            None => vec![],
        };
        let messages: Vec<&str> = want["msg"].as_str().unwrap().split(" / ").collect();
        let runs: Vec<(Option<&str>, &str)> = if commands.is_empty() {
            vec![(None, messages[0])]
        } else {
            commands
                .iter()
                .enumerate()
                .map(|(i, c)| (Some(*c), messages[i.min(messages.len() - 1)]))
                .collect()
        };
        for (command, msg) in runs {
            let mut env = env.clone();
            if let Some(c) = command {
                env.insert("CNI_COMMAND".into(), c.to_owned());
            }
            let input = if v["stdin_unreadable"] == json!(true) {
                Err(std::io::Error::other("broken pipe"))
            } else {
                Ok(stdin.clone())
            };
            let got = run_err(&env, input, &plugin);
            assert_eq!(got["code"], want["code"], "line {line} {command:?}: {got}");
            let got_msg = got["msg"].as_str().unwrap();
            if let Some(prefix) = msg.strip_suffix("<io error>") {
                assert!(got_msg.starts_with(prefix), "line {line}: {got_msg}");
            } else {
                assert_eq!(got_msg, msg, "line {line} {command:?}");
            }
        }
    }
}

#[test]
fn validation_vectors() {
    let Some(dir) = dir("validation_vectors") else {
        return;
    };
    for (line, v) in read_jsonl(&dir.join("cni_validation_vectors.jsonl")) {
        let value = v["value"].as_str().unwrap();
        let got = match v["field"].as_str().unwrap() {
            "CNI_CONTAINERID" => validate_container_id(value),
            "CNI_IFNAME" => validate_interface_name(value),
            f if f.starts_with("network name") => validate_network_name(value),
            other => panic!("line {line}: unknown field {other}"),
        };
        if v["valid"] == json!(true) {
            assert_eq!(got, Ok(()), "line {line}");
            continue;
        }
        let err = got.expect_err(&format!("line {line}: {value:?} must be refused"));
        let want = &v["error"];
        assert_eq!(
            u64::from(err.code),
            want["code"].as_u64().unwrap(),
            "line {line}"
        );
        assert_eq!(err.msg, want["msg"].as_str().unwrap(), "line {line}");
        assert_eq!(
            err.details,
            want["details"].as_str().unwrap(),
            "line {line}"
        );
    }
}

#[test]
fn an_empty_network_name_through_the_dispatcher_has_no_colon() {
    let env: BTreeMap<String, String> = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/p"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let got = run_err(
        &env,
        Ok(br#"{"cniVersion":"1.0.0","name":""}"#.to_vec()),
        &Fixed(Ok(())),
    );
    assert_eq!(got["code"], 7);
    assert_eq!(got["msg"], "missing network name");
    let got = run_err(&env, Ok(b"{not json".to_vec()), &Fixed(Ok(())));
    assert_eq!(got["code"], 6);
    let got = run_err(
        &env,
        Ok(br#"{"cniVersion":"0.2.0","name":"n"}"#.to_vec()),
        &Fixed(Ok(())),
    );
    assert_eq!(got["code"], 1, "{got}");
}

#[test]
fn result_conversion_vectors() {
    let Some(dir) = dir("result_conversion") else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("cni_result_conversion.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let input = CniResult::from_value(&v["input_1_1_0"]).unwrap();
    let expected = v["expected"].as_object().unwrap();
    let mut checked = 0;
    for (version, want) in expected {
        if tabby_cni::protocol::SUPPORTED_VERSIONS.contains(&version.as_str()) {
            assert_eq!(&input.to_value(version).unwrap(), want, "version {version}");
            // And back: reading the converted form gives the same result where nothing was
            // dropped.
            if version != "0.4.0" {
                assert_eq!(CniResult::from_value(want).unwrap(), input);
            }
            checked += 1;
        } else {
            // Versions before 0.3.0 (ip4/ip6 objects) are not spoken; writing one is refused.
            assert!(input.to_value(version).is_err(), "{version}");
        }
    }
    assert!(checked >= 3, "the vectors cover 0.4.0, 1.0.0 and 1.1.0");
    for case in v["ipconfig_marshal"].as_array().unwrap() {
        if let Some(want) = case.get("json") {
            let ip: IpConfig = serde_json::from_value(want.clone()).unwrap();
            assert_eq!(&serde_json::to_value(&ip).unwrap(), want);
        } else {
            let bad = serde_json::from_value::<IpConfig>(case["json_in"].clone());
            assert!(bad.is_err(), "{case}");
        }
    }
}

#[test]
fn version_reports_what_is_spoken() {
    let env: BTreeMap<String, String> = [("CNI_COMMAND".to_owned(), "VERSION".to_owned())].into();
    let lookup = |k: &str| env.get(k).cloned();
    let out = dispatch(
        &lookup,
        Ok(br#"{"cniVersion":"1.0.0"}"#.to_vec()),
        &Fixed(Ok(())),
    );
    assert!(out.success);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["cniVersion"], "1.0.0");
    let versions: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for needed in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(versions.contains(&needed));
    }
}
