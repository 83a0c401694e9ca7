//! The resource commands: apply, create, replace, delete, get, label.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use tabby_client::{Client, LabelChange, ObjectRef, Outcome, WriteMode};
use tabby_model::{Kind, LoadError, LoadOptions, Loaded, Resource, load};

use crate::cli::{Cli, Command, DeleteArgs, GetArgs, LabelArgs, OutputFormat, WriteArgs};
use crate::input::read_inputs;
use crate::output::{self, out};

pub(crate) fn run(cli: &Cli, command: &Command) -> Result<ExitCode> {
    let connect = || -> Result<Client> {
        let url = cli
            .datastore
            .clone()
            .unwrap_or_else(tabby_store::default_url);
        let store =
            tabby_store::open(&url).with_context(|| format!("cannot open datastore {url}"))?;
        Ok(Client::new(store))
    };
    match command {
        Command::Apply(args) => write(&connect()?, args, WriteMode::Apply),
        Command::Create(args) => write(&connect()?, args, WriteMode::Create),
        Command::Replace(args) => write(&connect()?, args, WriteMode::Replace),
        Command::Delete(args) => delete(&connect()?, args),
        Command::Get(args) => get(&connect()?, args),
        Command::Label(args) => label(&connect()?, args),
        Command::Selector(_)
        | Command::Policy(_)
        | Command::Node(_)
        | Command::Ipam(_)
        | Command::Lab(_)
        | Command::Datastore(_) => {
            unreachable!("dispatched in main")
        }
    }
}

/// Loads every document of every input; all errors of all files are collected.
pub(crate) fn load_inputs(
    files: &[std::path::PathBuf],
    namespace: Option<&str>,
    defaults: bool,
) -> Result<Vec<Loaded>> {
    let opts = LoadOptions {
        default_namespace: namespace.unwrap_or("default").to_owned(),
        enforce_namespace: namespace.is_some(),
        apply_defaults: defaults,
    };
    let mut loaded = Vec::new();
    let mut problems = Vec::new();
    let mut origin: HashMap<(Kind, String, String), String> = HashMap::new();
    for input in read_inputs(files)? {
        match load(&input.text, &input.name, &opts) {
            Ok(docs) => {
                for d in docs {
                    let r = &d.resource;
                    let key = (r.kind(), r.namespace().to_owned(), r.name().to_owned());
                    let here = format!("{} document {}", input.name, d.document);
                    if let Some(first) = origin.get(&key) {
                        problems.push(format!(
                            "{here}: {}: the same object is already defined in {first}",
                            r.describe()
                        ));
                    } else {
                        origin.insert(key, here);
                    }
                    loaded.push(d);
                }
            }
            Err(LoadError::Invalid(issues)) => {
                problems.extend(issues.iter().map(ToString::to_string))
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        let count = problems.len();
        bail!(
            "{}\n{count} problem{} found; nothing was written",
            problems.join("\n"),
            if count == 1 { "" } else { "s" }
        );
    }
    Ok(loaded)
}

fn print_outcomes(outcomes: &[Outcome], dry_run: bool) -> Result<()> {
    let suffix = if dry_run { " (dry run)" } else { "" };
    let text: String = outcomes
        .iter()
        .map(|o| format!("{} {}{suffix}\n", o.object, o.change))
        .collect();
    out(&text)?;
    Ok(())
}

fn write(client: &Client, args: &WriteArgs, mode: WriteMode) -> Result<ExitCode> {
    let loaded = load_inputs(&args.files.files, args.namespace.as_deref(), true)?;
    for d in &loaded {
        for w in &d.warnings {
            output::note(&format!("warning: {}: {w}", d.resource.describe()));
        }
    }
    let resources: Vec<Resource> = loaded.into_iter().map(|d| d.resource).collect();
    let outcomes = client
        .write(&resources, mode, args.dry_run)
        .map_err(|e| anyhow!("{e}\nnothing was written"))?;
    print_outcomes(&outcomes, args.dry_run)?;
    Ok(ExitCode::SUCCESS)
}

fn parse_kind(name: &str) -> Result<Kind> {
    Kind::from_cli_name(name).ok_or_else(|| {
        anyhow!("unknown kind {name:?}; run `tabby get --help` for the kinds and their short names")
    })
}

fn delete(client: &Client, args: &DeleteArgs) -> Result<ExitCode> {
    let ns = args.namespace.as_deref().unwrap_or("default");
    let objects: Vec<ObjectRef> = if args.files.is_empty() {
        let kind = parse_kind(args.kind.as_deref().unwrap_or_default())?;
        args.names
            .iter()
            .map(|n| ObjectRef::new(kind, ns, n))
            .collect()
    } else {
        load_inputs(&args.files, args.namespace.as_deref(), false)?
            .iter()
            .map(|d| ObjectRef::new(d.resource.kind(), d.resource.namespace(), d.resource.name()))
            .collect()
    };
    let outcomes = client
        .delete(&objects, args.ignore_not_found, args.dry_run)
        .map_err(|e| anyhow!("{e}\nnothing was deleted"))?;
    print_outcomes(&outcomes, args.dry_run)?;
    Ok(ExitCode::SUCCESS)
}

fn get(client: &Client, args: &GetArgs) -> Result<ExitCode> {
    let kinds: Vec<Kind> = if args.kind.eq_ignore_ascii_case("all") {
        if !args.names.is_empty() {
            bail!("`get all` takes no names; name a kind to get objects by name");
        }
        // As `kubectl get all`: Secrets are listed only when asked for by kind, so that a
        // dump of everything does not carry BGP passwords.
        Kind::ALL
            .iter()
            .copied()
            .filter(|k| *k != Kind::Secret)
            .collect()
    } else {
        vec![parse_kind(&args.kind)?]
    };
    let ns = args.namespace.as_deref().unwrap_or("default");
    let namespace_filter = if args.all_namespaces { None } else { Some(ns) };
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for kind in &kinds {
        if args.names.is_empty() {
            found.extend(client.list(*kind, namespace_filter)?);
        } else {
            for name in &args.names {
                let obj = ObjectRef::new(*kind, ns, name);
                match client.get(&obj)? {
                    Some(r) => found.push(r),
                    None => missing.push(obj.to_string()),
                }
            }
        }
    }
    let single = args.names.len() == 1 && kinds.len() == 1;
    let text = match args.output {
        OutputFormat::Yaml => output::yaml(&found),
        OutputFormat::Json => output::json(&found, single),
        OutputFormat::Name => found
            .iter()
            .map(|r| format!("{}/{}\n", r.kind().info().plural, r.name()))
            .collect(),
        OutputFormat::Table | OutputFormat::Wide => tables(
            &found,
            matches!(args.output, OutputFormat::Wide),
            args.all_namespaces,
        ),
    };
    if found.is_empty() && missing.is_empty() {
        let scope = match namespace_filter {
            Some(ns) if kinds.iter().any(|k| k.info().namespaced) => {
                format!(" in namespace {ns:?}")
            }
            _ => String::new(),
        };
        output::note(&format!("no resources found{scope}"));
    }
    out(&text)?;
    if missing.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow!("{} not found", missing.join(", ")))
    }
}

/// One table per kind, as kubectl prints `get all`.
fn tables(resources: &[Resource], wide: bool, all_namespaces: bool) -> String {
    let mut text = String::new();
    let several_kinds =
        resources.first().map(Resource::kind) != resources.last().map(Resource::kind);
    let mut start = 0;
    while start < resources.len() {
        let kind = resources[start].kind();
        let end = resources[start..]
            .iter()
            .position(|r| r.kind() != kind)
            .map_or(resources.len(), |n| start + n);
        let group = &resources[start..end];
        let show_ns = all_namespaces && kind.info().namespaced;
        let mut header = Vec::new();
        if show_ns {
            header.push("NAMESPACE".to_owned());
        }
        header.push("NAME".to_owned());
        header.extend(
            columns(&group[0], wide)
                .into_iter()
                .map(|(h, _)| h.to_owned()),
        );
        let rows: Vec<Vec<String>> = group
            .iter()
            .map(|r| {
                let mut row = Vec::new();
                if show_ns {
                    row.push(r.namespace().to_owned());
                }
                let name = if several_kinds {
                    format!("{}/{}", kind.info().plural, r.name())
                } else {
                    r.name().to_owned()
                };
                row.push(name);
                row.extend(columns(r, wide).into_iter().map(|(_, v)| v));
                row
            })
            .collect();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&output::table(&header, &rows));
        start = end;
    }
    text
}

fn opt<T: ToString>(v: Option<&T>) -> String {
    v.map_or_else(|| "-".to_owned(), ToString::to_string)
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(",")
    }
}

fn labels(r: &Resource) -> String {
    let l = &r.meta().labels;
    if l.is_empty() {
        "-".to_owned()
    } else {
        l.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Key fields of a resource for table output.
fn columns(r: &Resource, wide: bool) -> Vec<(&'static str, String)> {
    let mut cols = Vec::new();
    match r {
        Resource::Tier(o) => {
            cols.push(("ORDER", opt(o.spec.order.as_ref())));
            cols.push((
                "DEFAULTACTION",
                opt(o.spec.default_action.map(|a| format!("{a:?}")).as_ref()),
            ));
        }
        Resource::GlobalNetworkPolicy(o)
        | Resource::NetworkPolicy(o)
        | Resource::StagedNetworkPolicy(o)
        | Resource::StagedGlobalNetworkPolicy(o) => {
            cols.push(("TIER", opt(o.spec.tier.as_ref())));
            cols.push(("ORDER", opt(o.spec.order.as_ref())));
            cols.push((
                "SELECTOR",
                o.spec.selector.clone().unwrap_or_else(|| "all()".into()),
            ));
            if wide {
                let types: Vec<String> = o
                    .spec
                    .effective_types()
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect();
                cols.push(("TYPES", types.join(",")));
                cols.push(("INGRESS", o.spec.ingress.len().to_string()));
                cols.push(("EGRESS", o.spec.egress.len().to_string()));
            }
        }
        Resource::K8sNetworkPolicy(o) => {
            let sel = &o.spec.pod_selector;
            let mut terms: Vec<String> = sel
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            terms.extend(
                sel.match_expressions
                    .iter()
                    .map(|e| format!("{} {} {:?}", e.key, e.operator, e.values)),
            );
            cols.push((
                "PODSELECTOR",
                if terms.is_empty() {
                    "<all>".into()
                } else {
                    terms.join(",")
                },
            ));
            cols.push(("TYPES", o.spec.effective_policy_types().join(",")));
            if wide {
                cols.push((
                    "INGRESS",
                    opt(o.spec.ingress.as_ref().map(Vec::len).as_ref()),
                ));
                cols.push(("EGRESS", opt(o.spec.egress.as_ref().map(Vec::len).as_ref())));
            }
        }
        Resource::IpPool(o) => {
            cols.push(("CIDR", o.spec.cidr.clone()));
            cols.push(("BLOCKSIZE", opt(o.spec.block_size.as_ref())));
            if wide {
                cols.push(("IPIP", opt(o.spec.ipip_mode.as_ref())));
                cols.push(("VXLAN", opt(o.spec.vxlan_mode.as_ref())));
                cols.push(("NAT", opt(o.spec.nat_outgoing.as_ref())));
                cols.push(("DISABLED", o.spec.disabled.unwrap_or(false).to_string()));
                cols.push(("SELECTOR", opt(o.spec.node_selector.as_ref())));
            }
        }
        Resource::IpReservation(o) => cols.push(("CIDRS", list(&o.spec.reserved_cidrs))),
        Resource::BgpConfiguration(o) => {
            cols.push(("ASN", opt(o.spec.as_number.map(|a| a.0).as_ref())));
            cols.push(("MESH", opt(o.spec.node_to_node_mesh_enabled.as_ref())));
            if wide {
                cols.push(("LOGSEVERITY", opt(o.spec.log_severity_screen.as_ref())));
                cols.push(("PORT", opt(o.spec.listen_port.as_ref())));
            }
        }
        Resource::BgpPeer(o) => {
            cols.push((
                "PEER",
                o.spec
                    .peer_ip
                    .clone()
                    .or_else(|| o.spec.peer_selector.clone())
                    .unwrap_or_default(),
            ));
            cols.push(("ASN", opt(o.spec.as_number.map(|a| a.0).as_ref())));
            if wide {
                cols.push((
                    "NODE",
                    o.spec
                        .node
                        .clone()
                        .or_else(|| o.spec.node_selector.clone())
                        .unwrap_or_else(|| "(all)".into()),
                ));
            }
        }
        Resource::GlobalNetworkSet(o) | Resource::NetworkSet(o) => {
            cols.push(("NETS", list(&o.spec.nets)));
            if wide {
                cols.push(("LABELS", labels(r)));
            }
        }
        Resource::HostEndpoint(o) => {
            cols.push(("NODE", o.spec.node.clone()));
            cols.push(("INTERFACE", opt(o.spec.interface_name.as_ref())));
            if wide {
                cols.push(("EXPECTEDIPS", list(&o.spec.expected_ips)));
                cols.push(("PROFILES", list(&o.spec.profiles)));
            }
        }
        Resource::WorkloadEndpoint(o) => {
            cols.push(("NODE", o.spec.node.clone()));
            cols.push(("INTERFACE", o.spec.interface_name.clone()));
            cols.push(("NETWORKS", list(&o.spec.ip_networks)));
            if wide {
                cols.push(("PROFILES", list(&o.spec.profiles)));
                cols.push(("LABELS", labels(r)));
            }
        }
        Resource::Node(o) => {
            let bgp = o.spec.bgp.as_ref();
            cols.push((
                "ASN",
                opt(bgp.and_then(|b| b.as_number).map(|a| a.0).as_ref()),
            ));
            cols.push(("IPV4", opt(bgp.and_then(|b| b.ipv4_address.as_ref()))));
            if wide {
                cols.push(("IPV6", opt(bgp.and_then(|b| b.ipv6_address.as_ref()))));
                cols.push((
                    "RRCLUSTER",
                    opt(bgp.and_then(|b| b.route_reflector_cluster_id.as_ref())),
                ));
            }
        }
        Resource::Profile(o) => {
            cols.push(("INGRESS", o.spec.ingress.len().to_string()));
            cols.push(("EGRESS", o.spec.egress.len().to_string()));
        }
        Resource::Pod(o) => {
            cols.push(("NODE", opt(o.spec.node_name.as_ref())));
            cols.push(("IP", opt(r.pod_status().and_then(|s| s.pod_ip).as_ref())));
            if wide {
                cols.push(("LABELS", labels(r)));
            }
        }
        Resource::Namespace(_) | Resource::ServiceAccount(_) => cols.push(("LABELS", labels(r))),
        // As kubectl: the type and how many keys, never a value.
        Resource::Secret(o) => {
            cols.push(("TYPE", opt(o.secret_type.as_ref())));
            cols.push(("DATA", (o.data.len() + o.string_data.len()).to_string()));
        }
        Resource::FelixConfiguration(_) => {}
    }
    cols
}

fn label(client: &Client, args: &LabelArgs) -> Result<ExitCode> {
    let kind = parse_kind(&args.kind)?;
    let changes = args
        .changes
        .iter()
        .map(|c| {
            if let Some((k, v)) = c.split_once('=') {
                Ok(LabelChange::Set(k.to_owned(), v.to_owned()))
            } else if let Some(k) = c.strip_suffix('-') {
                Ok(LabelChange::Remove(k.to_owned()))
            } else {
                Err(anyhow!(
                    "{c:?} is not a label change: use key=value to set or key- to remove"
                ))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let obj = ObjectRef::new(
        kind,
        args.namespace.as_deref().unwrap_or("default"),
        &args.name,
    );
    let outcome = client.label(&obj, &changes, args.overwrite)?;
    print_outcomes(&[outcome], false)?;
    Ok(ExitCode::SUCCESS)
}
