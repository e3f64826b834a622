//! The plan shown without writing it: `--dry-run --json` for programs, `--explain` for
//! people.

use crate::copy::PlannedKind;
use crate::plan::Plan;
use mkroot_common::archive::image_order;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Serialize)]
struct JsonLibrary {
    name: String,
    path: String,
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
                    path: l.path.display().to_string(),
                })
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
            _ => format!("{name}  {:o}", entry.mode),
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
    out
}
