//! Loads arbitrary text as a resource file (YAML or JSON, any kinds). Loading must never panic;
//! whatever loads must survive the stored form and the YAML output unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tabby_model::yaml::{parse_documents, to_yaml_string};
use tabby_model::{LoadOptions, load, stored};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(loaded) = load(text, "fuzz", &LoadOptions::default()) else {
        return;
    };
    for l in loaded {
        let form = stored::encode(&l.resource);
        let back = stored::decode(form.kind, &form.json, 1).expect("stored form decodes");
        let mut expected = l.resource.clone();
        expected.meta_mut().resource_version = Some("1".to_owned());
        assert_eq!(back, expected);
        let yaml = to_yaml_string(&[l.resource.to_value()]);
        let docs = parse_documents(&yaml).expect("our YAML output parses");
        assert_eq!(docs[0].value, l.resource.to_value(), "YAML output:\n{yaml}");
    }
});
