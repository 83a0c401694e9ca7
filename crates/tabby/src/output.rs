//! Everything the CLI prints goes through here: tables, YAML, JSON, and errors. Writes go to
//! locked handles and a closed pipe (`tabby get ... | head`) ends output quietly instead of
//! panicking as `println!` would.

use std::io::{self, Write};

use serde_json::Value;
use tabby_model::Resource;
use tabby_model::yaml::to_yaml_string;

/// Writes text to standard output; a closed pipe is not an error.
pub(crate) fn out(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes a line to standard error (warnings, progress that is not the result).
pub(crate) fn note(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Prints an error and its causes.
pub(crate) fn error(e: &anyhow::Error) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "error: {e}");
    for cause in e.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
}

/// Renders resources as a YAML stream.
pub(crate) fn yaml(resources: &[Resource]) -> String {
    let values: Vec<Value> = resources.iter().map(Resource::to_value).collect();
    to_yaml_string(&values)
}

/// Renders resources as JSON: one object, or a `List` for several (as kubectl does).
pub(crate) fn json(resources: &[Resource], single: bool) -> String {
    let value = if single && resources.len() == 1 {
        resources[0].to_value()
    } else {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": resources.iter().map(Resource::to_value).collect::<Vec<_>>(),
        })
    };
    let mut s = serde_json::to_string_pretty(&value).unwrap_or_default();
    s.push('\n');
    s
}

/// Lays out rows in aligned columns.
pub(crate) fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
