use super::*;

#[test]
fn sqlite_urls_name_a_file() {
    assert_eq!(
        parse("sqlite:/var/lib/tabby/tabby.db").unwrap(),
        Location::Sqlite("/var/lib/tabby/tabby.db".into())
    );
    assert_eq!(
        parse("sqlite:///var/lib/tabby/tabby.db").unwrap(),
        Location::Sqlite("/var/lib/tabby/tabby.db".into())
    );
    assert_eq!(
        parse("sqlite:relative/t.db").unwrap(),
        Location::Sqlite("relative/t.db".into())
    );
}

#[test]
fn sqlite_urls_without_a_shareable_file_are_refused() {
    for url in [
        "sqlite:",
        "sqlite://",
        "sqlite::memory:",
        "sqlite:file:x.db?mode=ro",
    ] {
        let err = parse(url).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidUrl { .. }),
            "{url} must be refused, got {err:?}"
        );
    }
}

#[cfg(feature = "etcd")]
#[test]
fn etcd_urls_go_to_the_etcd_backend() {
    assert_eq!(parse("etcd://127.0.0.1:2379").unwrap(), Location::Etcd);
    assert_eq!(
        parse("etcds://etcd.example:2379/site?ca=/ca.pem").unwrap(),
        Location::Etcd
    );
    let err = parse("etcd://127.0.0.1").unwrap_err();
    assert!(err.to_string().contains("has no port"), "{err}");
}

#[cfg(not(feature = "etcd"))]
#[test]
fn etcd_urls_are_not_built() {
    for (url, scheme) in [
        ("etcd://127.0.0.1:2379", "etcd"),
        ("etcds://etcd.example:2379", "etcds"),
    ] {
        let err = open(url).err().expect("etcd must not open");
        assert_eq!(
            err,
            StoreError::NotBuilt {
                scheme: scheme.to_owned()
            }
        );
        assert!(
            err.to_string().contains("without the etcd feature"),
            "{err}"
        );
    }
}

#[test]
fn garbage_urls_name_the_accepted_forms() {
    for url in ["", "/var/lib/tabby/tabby.db", "postgres://db", "tabby.db"] {
        let err = open(url).err().expect("garbage must not open");
        let StoreError::InvalidUrl { url: got, reason } = &err else {
            panic!("{url:?} must give InvalidUrl, got {err:?}");
        };
        assert_eq!(got, url);
        assert!(reason.contains("sqlite:PATH"), "{reason}");
        assert!(reason.contains("etcd://"), "{reason}");
    }
}

#[test]
fn effective_uid_is_the_second_uid_field() {
    let status = "Name:\tcat\nUmask:\t0022\nUid:\t1000\t0\t1000\t1000\nGid:\t100\t100\t100\t100\n";
    assert_eq!(effective_uid(status), Some(0));
    assert_eq!(effective_uid("Name:\tcat\n"), None);
}

#[test]
fn default_url_is_system_wide_for_root_and_per_user_otherwise() {
    assert_eq!(
        default_url_for(Some(0), Some("/x"), Some("/root")),
        "sqlite:/var/lib/tabby/tabby.db"
    );
    assert_eq!(
        default_url_for(Some(1000), Some("/data/"), Some("/home/u")),
        "sqlite:/data/tabby/tabby.db"
    );
    assert_eq!(
        default_url_for(Some(1000), Some("relative"), Some("/home/u")),
        "sqlite:/home/u/.local/share/tabby/tabby.db"
    );
    assert_eq!(
        default_url_for(None, None, Some("/home/u")),
        "sqlite:/home/u/.local/share/tabby/tabby.db"
    );
    assert_eq!(
        default_url_for(Some(1000), None, None),
        "sqlite:/var/lib/tabby/tabby.db"
    );
}

#[test]
fn default_url_parses() {
    assert!(matches!(parse(&default_url()), Ok(Location::Sqlite(_))));
}
