//! Client behaviour against the real SQLite backend in a temporary directory.

use tabby_model::{LoadOptions, load};
use tabby_store::sqlite::SqliteStore;
use tabby_test_util::ScratchDir;

use super::*;

struct TempDb {
    dir: ScratchDir,
}

impl TempDb {
    fn new() -> Self {
        Self {
            dir: ScratchDir::new("client"),
        }
    }

    fn client(&self) -> Client {
        Client::new(Box::new(
            SqliteStore::open(self.dir.path().join("t.db")).expect("store must open"),
        ))
    }
}

fn resources(text: &str) -> Vec<Resource> {
    load(text, "t.yaml", &LoadOptions::default())
        .expect("test input must be valid")
        .into_iter()
        .map(|l| l.resource)
        .collect()
}

const TWO: &str = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n---\n\
                   apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web, namespace: prod}\nspec: {tier: security, selector: app == 'web'}\n";

fn changes(outcomes: &[Outcome]) -> Vec<Change> {
    outcomes.iter().map(|o| o.change).collect()
}

#[test]
fn apply_creates_then_reports_unchanged_then_configured() {
    let db = TempDb::new();
    let c = db.client();
    let first = c.write(&resources(TWO), WriteMode::Apply, false).unwrap();
    assert_eq!(changes(&first), [Change::Created, Change::Created]);
    let again = c.write(&resources(TWO), WriteMode::Apply, false).unwrap();
    assert_eq!(changes(&again), [Change::Unchanged, Change::Unchanged]);
    let rev = c.store().revision().unwrap();
    let edited = resources(&TWO.replace("order: 100", "order: 200"));
    assert_eq!(
        changes(&c.write(&edited, WriteMode::Apply, false).unwrap()),
        [Change::Configured, Change::Unchanged]
    );
    assert_eq!(
        c.store().revision().unwrap(),
        rev + 1,
        "one commit, one revision"
    );
}

#[test]
fn create_of_an_existing_object_writes_nothing() {
    let db = TempDb::new();
    let c = db.client();
    let tier_only: Vec<Resource> = resources(TWO).into_iter().take(1).collect();
    c.write(&tier_only, WriteMode::Apply, false).unwrap();
    let rev = c.store().revision().unwrap();
    let err = c
        .write(&resources(TWO), WriteMode::Create, false)
        .unwrap_err();
    assert!(
        err.to_string().contains("Tier \"security\" already exists"),
        "{err}"
    );
    assert_eq!(c.store().revision().unwrap(), rev);
    let np = ObjectRef::new(Kind::NetworkPolicy, "prod", "web");
    assert!(
        c.get(&np).unwrap().is_none(),
        "the valid document must not have been written either"
    );
}

#[test]
fn replace_honours_resource_version() {
    let db = TempDb::new();
    let c = db.client();
    assert!(matches!(
        c.write(&resources(TWO), WriteMode::Replace, false),
        Err(ClientError::Several(_))
    ));
    c.write(&resources(TWO), WriteMode::Apply, false).unwrap();
    let tier = ObjectRef::new(Kind::Tier, "", "security");
    let mut stale = c.get(&tier).unwrap().unwrap();
    c.write(
        &resources(&TWO.replace("order: 100", "order: 5")),
        WriteMode::Apply,
        false,
    )
    .unwrap();
    stale.meta_mut().labels.insert("x".into(), "y".into());
    let err = c.write(&[stale], WriteMode::Replace, false).unwrap_err();
    assert!(matches!(err, ClientError::Conflict { .. }), "{err}");
}

#[test]
fn dry_run_writes_nothing() {
    let db = TempDb::new();
    let c = db.client();
    let out = c.write(&resources(TWO), WriteMode::Apply, true).unwrap();
    assert_eq!(changes(&out), [Change::Created, Change::Created]);
    assert_eq!(c.store().revision().unwrap(), 0);
}

#[test]
fn delete_is_all_or_nothing() {
    let db = TempDb::new();
    let c = db.client();
    c.write(&resources(TWO), WriteMode::Apply, false).unwrap();
    let tier = ObjectRef::new(Kind::Tier, "", "security");
    let ghost = ObjectRef::new(Kind::Tier, "", "ghost");
    let err = c
        .delete(&[tier.clone(), ghost.clone()], false, false)
        .unwrap_err();
    assert!(
        err.to_string().contains("Tier \"ghost\" not found"),
        "{err}"
    );
    assert!(c.get(&tier).unwrap().is_some());
    let out = c.delete(&[tier.clone(), ghost], true, false).unwrap();
    assert_eq!(changes(&out), [Change::Deleted]);
    assert!(c.get(&tier).unwrap().is_none());
}

#[test]
fn label_sets_removes_and_guards_overwrite() {
    let db = TempDb::new();
    let c = db.client();
    c.write(&resources(TWO), WriteMode::Apply, false).unwrap();
    let np = ObjectRef::new(Kind::NetworkPolicy, "prod", "web");
    let set = |k: &str, v: &str| LabelChange::Set(k.into(), v.into());
    assert_eq!(
        c.label(&np, &[set("team", "a")], false).unwrap().change,
        Change::Labeled
    );
    assert!(matches!(
        c.label(&np, &[set("team", "b")], false),
        Err(ClientError::LabelExists { .. })
    ));
    c.label(&np, &[set("team", "b")], true).unwrap();
    assert_eq!(c.get(&np).unwrap().unwrap().meta().labels["team"], "b");
    assert!(matches!(
        c.label(&np, &[set("bad key!", "x")], false),
        Err(ClientError::Invalid { .. })
    ));
    c.label(&np, &[LabelChange::Remove("team".into())], false)
        .unwrap();
    assert!(c.get(&np).unwrap().unwrap().meta().labels.is_empty());
}

#[test]
fn list_returns_typed_objects_with_their_revision() {
    let db = TempDb::new();
    let c = db.client();
    c.write(&resources(TWO), WriteMode::Apply, false).unwrap();
    let all = c.list(Kind::NetworkPolicy, None).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].namespace(), "prod");
    assert!(all[0].meta().resource_version.is_some());
    assert!(c.list(Kind::NetworkPolicy, Some("dev")).unwrap().is_empty());
}
