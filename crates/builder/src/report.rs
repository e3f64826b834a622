//! The plan shown without writing it: `--dry-run --json` for programs, `--explain` for
//! people.

use crate::copy::PlannedKind;
use crate::plan::Plan;
use mkroot_common::archive::image_order;
use mkroot_common::size::human_bytes;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Serialize)]
struct JsonLibrary {
    name: String,
    /// `null` for a library not found (kept going with `--allow-missing`).
    path: Option<String>,
}

#[derive(Serialize)]
struct JsonProgram {
    path: String,
    interpreter: Option<String>,
    /// In load order, for this program alone.
    libraries: Vec<JsonLibrary>,
}

#[derive(Serialize)]
struct JsonFile {
    /// Path in the image.
    path: String,
    /// Host path it is copied from; `null` for what mkroot makes.
    source: Option<String>,
    reason: String,
    /// `dir`, `file`, `symlink` or `generated`.
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    /// Bytes of content: a file's size, a generated file's length, 0 otherwise.
    size: u64,
}

/// What one kind of reason adds up to.
#[derive(Serialize)]
struct JsonCategory {
    category: &'static str,
    files: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct JsonMissing {
    name: String,
    needed_by: String,
}

#[derive(Serialize)]
struct JsonPlan {
    programs: Vec<JsonProgram>,
    files: Vec<JsonFile>,
    cmd: Vec<String>,
    missing: Vec<JsonMissing>,
    /// Bytes by kind of reason, largest first.
    summary: Vec<JsonCategory>,
}

/// The kind of reason a file is in the image for, for the summaries: what the user
/// asked for, what the loader loads for it, what a trace saw, what was added by hand,
/// what the extras add, and the tree's own directories and links.
pub fn category(reason: &str) -> &'static str {
    if reason.starts_with("traced by ") {
        "traced"
    } else if reason.starts_with("added by ") {
        "added"
    } else if reason == "program" || reason.starts_with("interpreter of ") {
        "programs"
    } else if reason.contains(" loaded for ")
        || reason.starts_with("program interpreter of ")
        || reason.ends_with("(its libraries)")
    {
        "libraries"
    } else if ["directory", "mount point", "merged-/usr link"].contains(&reason)
        || reason.starts_with("symlink on the way to ")
    {
        "structure"
    } else {
        "extras"
    }
}

/// Bytes of content of a planned entry.
fn content_size(kind: &PlannedKind) -> u64 {
    match kind {
        PlannedKind::File { size, .. } => *size,
        PlannedKind::Generated(bytes) => bytes.len() as u64,
        PlannedKind::Dir | PlannedKind::Symlink { .. } => 0,
    }
}

/// (category, entries, bytes), largest first, then by name.
fn summary(plan: &Plan) -> Vec<(&'static str, usize, u64)> {
    let mut totals: std::collections::BTreeMap<&'static str, (usize, u64)> = Default::default();
    for entry in plan.tree.entries().values() {
        let total = totals.entry(category(&entry.reason)).or_default();
        total.0 += 1;
        total.1 += content_size(&entry.kind);
    }
    let mut sorted: Vec<_> = totals.into_iter().map(|(c, (n, b))| (c, n, b)).collect();
    sorted.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    sorted
}

fn kind_name(kind: &PlannedKind) -> (&'static str, Option<String>) {
    match kind {
        PlannedKind::Dir => ("dir", None),
        PlannedKind::File { .. } => ("file", None),
        PlannedKind::Generated(_) => ("generated", None),
        PlannedKind::Symlink { target } => ("symlink", Some(target.clone())),
    }
}

fn sorted_files(plan: &Plan) -> Vec<(&String, &crate::copy::PlannedEntry)> {
    let mut files: Vec<_> = plan.tree.entries().iter().collect();
    files.sort_by(|a, b| image_order(a.0, b.0));
    files
}

/// The plan as pretty JSON with a trailing newline.
pub fn json(plan: &Plan) -> String {
    let programs = plan
        .programs
        .iter()
        .map(|r| JsonProgram {
            path: r.program.display().to_string(),
            interpreter: r.interpreter.as_ref().map(|p| p.display().to_string()),
            libraries: r
                .libraries
                .iter()
                .map(|l| JsonLibrary {
                    name: l.name.clone(),
                    path: Some(l.path.display().to_string()),
                })
                .chain(r.missing.iter().map(|m| JsonLibrary {
                    name: m.name.clone(),
                    path: None,
                }))
                .collect(),
        })
        .collect();
    let files = sorted_files(plan)
        .into_iter()
        .map(|(path, entry)| {
            let (kind, link) = kind_name(&entry.kind);
            JsonFile {
                path: format!("/{path}"),
                source: entry.source.as_ref().map(|s| s.display().to_string()),
                reason: entry.reason.clone(),
                kind,
                link,
                size: content_size(&entry.kind),
            }
        })
        .collect();
    let missing = plan
        .missing
        .iter()
        .map(|m| JsonMissing {
            name: m.name.clone(),
            needed_by: m.needed_by.display().to_string(),
        })
        .collect();
    let report = JsonPlan {
        programs,
        files,
        cmd: plan.command.argv(),
        missing,
        summary: summary(plan)
            .into_iter()
            .map(|(category, files, bytes)| JsonCategory {
                category,
                files,
                bytes,
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".to_string());
    text.push('\n');
    text
}

/// The plan as two trees: each program with what the loader loads for it, then the
/// image's directory tree with where each file comes from and why.
pub fn explain(plan: &Plan) -> String {
    let mut out = String::new();
    for program in &plan.programs {
        let _ = writeln!(out, "{}", program.program.display());
        let mut lines: Vec<String> = Vec::new();
        if let Some(interpreter) = &program.interpreter {
            lines.push(format!("interpreter {}", interpreter.display()));
        }
        for library in &program.libraries {
            lines.push(format!("{} => {}", library.name, library.path.display()));
        }
        for missing in &program.missing {
            lines.push(format!("{} => (not found)", missing.name));
        }
        if lines.is_empty() {
            lines.push("static: loads nothing".to_string());
        }
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let branch = if i == last {
                "└── "
            } else {
                "├── "
            };
            let _ = writeln!(out, "{branch}{line}");
        }
    }
    for missing in &plan.missing {
        let _ = writeln!(
            out,
            "missing: {} (needed by {})",
            missing.name,
            missing.needed_by.display()
        );
    }
    let _ = writeln!(
        out,
        "\nimage (default command: {}):",
        plan.command.argv().join(" ")
    );
    let _ = writeln!(out, "/");
    for (path, entry) in sorted_files(plan) {
        let depth = path.matches('/').count();
        let name = path.rsplit('/').next().unwrap_or(path);
        let indent = "    ".repeat(depth);
        let what = match &entry.kind {
            PlannedKind::Dir => format!("{name}/"),
            PlannedKind::Symlink { target } => format!("{name} -> {target}"),
            kind => format!(
                "{name}  {:o}  {}",
                entry.mode,
                human_bytes(content_size(kind))
            ),
        };
        let from = match (&entry.kind, &entry.source) {
            (PlannedKind::Dir, _) | (PlannedKind::Symlink { .. }, _) => String::new(),
            (_, Some(source)) if source.display().to_string() != format!("/{path}") => {
                format!(" from {}", source.display())
            }
            _ => String::new(),
        };
        let _ = writeln!(out, "{indent}{what}{from}  [{}]", entry.reason);
    }
    let _ = writeln!(out, "\nby reason, largest first:");
    for (category, files, bytes) in summary(plan) {
        let _ = writeln!(
            out,
            "  {category:<10} {:>10}  {files} entries",
            human_bytes(bytes)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::category;

    #[test]
    fn reasons_fall_into_categories() {
        assert_eq!(category("program"), "programs");
        assert_eq!(category("interpreter of /app/x.sh"), "programs");
        assert_eq!(category("libc.so.6 loaded for /usr/bin/sh"), "libraries");
        assert_eq!(category("program interpreter of /usr/bin/sh"), "libraries");
        assert_eq!(category("traced by gcc -c h.c"), "traced");
        assert_eq!(category("traced by gcc -c h.c (its libraries)"), "traced");
        assert_eq!(category("added by --add /opt/x"), "added");
        assert_eq!(
            category("added by the recipe: x, in the recipe's directory"),
            "added"
        );
        assert_eq!(category("CA certificates for /usr/bin/curl"), "extras");
        assert_eq!(category("mount point"), "structure");
        assert_eq!(category("symlink on the way to /lib/x"), "structure");
    }
}
