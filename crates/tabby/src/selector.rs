//! `tabby selector parse|match`: selector tools for scripts.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use tabby_model::selector::Selector;

use crate::cli::{SelectorCommand, SelectorOutput};
use crate::output::out;

fn parse(expr: &str) -> Result<Selector> {
    Selector::parse(expr).map_err(|e| anyhow!("invalid selector {expr:?}: {e}"))
}

pub(crate) fn run(cmd: &SelectorCommand) -> Result<ExitCode> {
    match cmd {
        SelectorCommand::Parse { expr, output } => {
            let sel = parse(expr)?;
            let text = match output {
                SelectorOutput::Text => format!("{}\n{}\n", sel.canonical(), sel.id()),
                SelectorOutput::Json => {
                    format!(
                        "{}\n",
                        serde_json::json!({"canonical": sel.canonical(), "id": sel.id()})
                    )
                }
            };
            out(&text)?;
        }
        SelectorCommand::Match { expr, labels } => {
            let sel = parse(expr)?;
            let labels: BTreeMap<String, String> =
                serde_json::from_str(labels).with_context(|| {
                    format!("--labels {labels:?} is not a JSON object of string values")
                })?;
            out(&format!("{}\n", sel.matches(&labels)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
