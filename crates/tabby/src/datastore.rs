//! `tabby datastore export|import|migrate`: whole-datastore copies between backends.
//!
//! Every stored object goes, whatever its kind: Calico resources, Kubernetes objects and the
//! IPAM state (blocks, affinities, handles), as `DatastoreObject` YAML documents carrying the
//! datastore key and the stored JSON value. Writes go in commits of at most [`BATCH`] ops, as
//! etcd refuses larger transactions by default; a target that already holds objects is refused
//! unless `--overwrite`, so a failed copy can simply be run again. Every copy is read back and
//! compared before the command reports success.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use tabby_model::yaml::{parse_documents, to_yaml_string};
use tabby_store::{Datastore, Key, Op};

use crate::cli::DatastoreCommand;
use crate::output::{note, out};

/// Ops per commit: below etcd's default `--max-txn-ops` of 128.
const BATCH: usize = 100;

const API_VERSION: &str = "tabby.dev/v1";
const KIND: &str = "DatastoreObject";

pub(crate) fn run(datastore: Option<&str>, cmd: &DatastoreCommand) -> Result<ExitCode> {
    let default = || datastore.map_or_else(tabby_store::default_url, str::to_owned);
    match cmd {
        DatastoreCommand::Export { output } => {
            let url = default();
            let store = open(&url)?;
            let (objects, revision) = snapshot(&*store)?;
            let text = export_text(&objects, &url, revision);
            match output {
                Some(path) => std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => out(&text)?,
            }
            if output.is_some() {
                note(&format!(
                    "exported {} objects from {url} at revision {revision}",
                    objects.len()
                ));
            }
        }
        DatastoreCommand::Import { file, overwrite } => {
            let url = default();
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let objects = parse_export(&text)
                .with_context(|| format!("{} is not a tabby datastore export", file.display()))?;
            let store = open(&url)?;
            let commits = copy(&objects, &*store, *overwrite, &url)?;
            note(&format!(
                "imported {} objects into {url} in {commits} commits; read back and verified",
                objects.len()
            ));
        }
        DatastoreCommand::Migrate {
            from,
            to,
            overwrite,
        } => {
            if from == to {
                bail!("--from and --to name the same datastore ({from})");
            }
            let source = open(from)?;
            let target = open(to)?;
            let (objects, revision) = snapshot(&*source)?;
            let commits = copy(&objects, &*target, *overwrite, to)?;
            // Writers that kept going during the copy would leave the target behind.
            let (after, now) = snapshot(&*source)?;
            if after != objects {
                bail!(
                    "{from} changed while it was copied (revision {revision} to {now}); stop the writers \
                     (agents, CNI, the CLI) and run the migration again with --overwrite"
                );
            }
            note(&format!(
                "copied {} objects from {from} (revision {revision}) to {to} in {commits} commits; read back and verified",
                objects.len()
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open(url: &str) -> Result<Box<dyn Datastore>> {
    tabby_store::open(url).with_context(|| format!("cannot open datastore {url}"))
}

/// Every object, by key, and the revision of the listing.
fn snapshot(store: &dyn Datastore) -> Result<(BTreeMap<Key, String>, i64)> {
    let listing = store.list(None, None).context("listing the datastore")?;
    let objects = listing
        .entries
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect();
    Ok((objects, listing.revision))
}

/// Writes `objects` into `store` in batches and reads them back; the number of commits.
fn copy(
    objects: &BTreeMap<Key, String>,
    store: &dyn Datastore,
    overwrite: bool,
    url: &str,
) -> Result<usize> {
    let (existing, _) = snapshot(store)?;
    if !overwrite && !existing.is_empty() {
        let first = existing.keys().next().map(ToString::to_string);
        bail!(
            "{url} already holds {} objects (for example {}); nothing was written. Import into an \
             empty datastore, or pass --overwrite to replace the objects of the same name",
            existing.len(),
            first.unwrap_or_default()
        );
    }
    let ops: Vec<Op> = objects
        .iter()
        .map(|(key, value)| {
            if overwrite {
                Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                }
            } else {
                // Create: a writer that slipped in meanwhile makes the commit fail, not vanish.
                Op::Create {
                    key: key.clone(),
                    value: value.clone(),
                }
            }
        })
        .collect();
    let mut commits = 0;
    for (n, batch) in ops.chunks(BATCH).enumerate() {
        store.commit(batch).with_context(|| {
            format!(
                "writing objects {} to {} of {} into {url} (the {n} commits before went through; \
                 run again with --overwrite)",
                n * BATCH + 1,
                n * BATCH + batch.len(),
                ops.len()
            )
        })?;
        commits += 1;
    }
    verify(objects, store, url)?;
    Ok(commits)
}

/// Reads every object back and compares it with what was written.
fn verify(objects: &BTreeMap<Key, String>, store: &dyn Datastore, url: &str) -> Result<()> {
    let (stored, _) = snapshot(store)?;
    for (key, value) in objects {
        match stored.get(key) {
            None => bail!("verification failed: {key} is missing from {url}"),
            Some(v) if v != value => {
                bail!("verification failed: {key} in {url} differs from what was written")
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The YAML stream of an export: one `DatastoreObject` per object.
fn export_text(objects: &BTreeMap<Key, String>, url: &str, revision: i64) -> String {
    let docs: Vec<Value> = objects
        .iter()
        .map(|(key, value)| {
            let mut doc = Map::new();
            doc.insert("apiVersion".into(), json!(API_VERSION));
            doc.insert("kind".into(), json!(KIND));
            doc.insert(
                "key".into(),
                json!({"kind": key.kind, "namespace": key.namespace, "name": key.name}),
            );
            // Values are JSON by contract; anything else is kept as text.
            match serde_json::from_str::<Value>(value) {
                Ok(v) => doc.insert("value".into(), v),
                Err(_) => doc.insert("valueText".into(), json!(value)),
            };
            Value::Object(doc)
        })
        .collect();
    format!(
        "# tabby datastore export: {} objects from {url} at revision {revision}\n# restore with: tabby datastore import -f FILE\n{}",
        objects.len(),
        to_yaml_string(&docs)
    )
}

/// Reads an export back; every problem is reported with its document and line, and nothing
/// is returned unless every document is sound.
fn parse_export(text: &str) -> Result<BTreeMap<Key, String>> {
    let docs = parse_documents(text).map_err(|e| anyhow::anyhow!("YAML error at {e}"))?;
    let mut objects = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let at = format!("document {} (line {})", i + 1, doc.line);
        match object_of(&doc.value) {
            Ok((key, value)) => {
                if objects.insert(key.clone(), value).is_some() {
                    problems.push(format!("{at}: {key} appears twice"));
                }
            }
            Err(reason) => problems.push(format!("{at}: {reason}")),
        }
    }
    if !problems.is_empty() {
        bail!("nothing was written:\n  {}", problems.join("\n  "));
    }
    Ok(objects)
}

fn object_of(doc: &Value) -> Result<(Key, String), String> {
    let field = |name: &str| doc.get(name).and_then(Value::as_str);
    if field("kind") != Some(KIND) || field("apiVersion") != Some(API_VERSION) {
        return Err(format!(
            "not a {KIND} (apiVersion {API_VERSION}); found kind {:?}, apiVersion {:?}",
            field("kind").unwrap_or(""),
            field("apiVersion").unwrap_or("")
        ));
    }
    let key = doc.get("key").ok_or("key: missing")?;
    let part = |name: &str| -> Result<String, String> {
        match key.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            None if name == "namespace" => Ok(String::new()),
            _ => Err(format!("key.{name}: must be a string")),
        }
    };
    let key = Key::new(part("kind")?, part("namespace")?, part("name")?);
    if key.kind.is_empty() || key.name.is_empty() {
        return Err("key.kind and key.name must not be empty".to_owned());
    }
    let value = match (doc.get("value"), doc.get("valueText")) {
        (Some(v), None) => v.to_string(),
        (None, Some(Value::String(s))) => s.clone(),
        _ => return Err("needs exactly one of value (JSON) or valueText (a string)".to_owned()),
    };
    Ok((key, value))
}
