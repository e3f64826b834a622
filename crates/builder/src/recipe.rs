//! Recipes: a build written down in a TOML file (`mkroot -f image.toml`), so the same
//! image can be built again, and checked against (`--check`).
//!
//! ```toml
//! programs = ["sh", "cat"]
//! cmd = ["/bin/sh", "-c", "cat /etc/greeting"]   # or one string, split like a shell
//! users = ["app"]
//! user = "app"                                   # the image runs as
//! workdir = "/"
//! tag = "mkroot/hello:1"
//! env = { LANG = "C.UTF-8" }
//!
//! [[files]]
//! host = "greeting.txt"                          # relative to this file
//! image = "/etc/greeting"
//!
//! trace = ["cat /etc/greeting"]                  # probes, run in this file's directory
//! [tracing]                                      # how they run (all optional)
//! timeout = 120                                  # seconds
//! net = "none"                                   # or "host"
//! exclude = ["/usr/share/locale/**"]
//! allow_fail = false
//!
//! [output]
//! path = "hello.oci.tar"                         # relative to this file
//! format = "oci"                                 # or "rootfs"
//! ```
//!
//! Relative host paths are taken from the recipe's directory, not the caller's, so a
//! recipe builds the same image wherever it is run from. Unknown keys are errors: a
//! misspelt key silently ignored would build a different image than the one written.

use crate::extras::{Extras, GconvChoice};
use crate::programs::normalize;
use crate::request::{
    check_trace, is_user_name, split_command, AddSpec, BuildRequest, OciSettings, OutputFormat,
    TraceRequest,
};
use crate::trace::{self, TraceNet};
use mkroot_common::host_file::read_regular_to_string;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Names looked up in PATH, or paths.
    pub programs: Vec<String>,
    #[serde(default)]
    pub files: Vec<AddedFile>,
    /// Users added to /etc/passwd.
    #[serde(default)]
    pub users: Vec<String>,
    pub cmd: Option<Command>,
    pub entrypoint: Option<Command>,
    /// Sorted by key (a TOML table has no order to keep).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    /// The user the image runs as.
    pub user: Option<String>,
    pub tag: Option<String>,
    pub output: Option<RecipeOutput>,
    pub sysroot: Option<PathBuf>,
    #[serde(default)]
    pub allow_missing: bool,
    #[serde(default)]
    pub extras: RecipeExtras,
    /// Probes, as `--trace` takes them.
    #[serde(default)]
    pub trace: Vec<String>,
    #[serde(default)]
    pub tracing: RecipeTracing,
}

/// How the recipe's probes run, as the `--trace-*` flags say it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RecipeTracing {
    /// Seconds.
    pub timeout: Option<u64>,
    pub net: TraceNet,
    pub exclude: Vec<String>,
    pub allow_fail: bool,
}

/// A command as an argv array, or one string split as a shell would.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Command {
    Argv(Vec<String>),
    Line(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AddedFile {
    pub host: PathBuf,
    /// Where it goes in the image; the host path when absent.
    pub image: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecipeOutput {
    pub path: Option<PathBuf>,
    pub format: Option<OutputFormat>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RecipeExtras {
    pub nss: bool,
    pub terminfo: bool,
    pub libgcc: bool,
    /// `detect`, `all` or `off`.
    pub gconv: String,
    pub ca_certs: bool,
}

impl Default for RecipeExtras {
    fn default() -> Self {
        RecipeExtras {
            nss: true,
            terminfo: true,
            libgcc: true,
            gconv: "detect".to_string(),
            ca_certs: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("{path}: cannot read the recipe: {source}; check the path given to -f")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}; see the recipe keys in mkroot --help")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {field}: {message}")]
    Field {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

impl Recipe {
    /// Reads and parses a recipe file.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let text = read_regular_to_string(path).map_err(|source| RecipeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| RecipeError::Parse {
            path: path.to_path_buf(),
            line: e
                .span()
                .map_or(1, |span| text[..span.start].matches('\n').count() + 1),
            message: e.message().trim().replace('\n', " "),
        })
    }

    /// The request the recipe describes; `recipe_path` anchors its relative paths.
    pub fn to_request(&self, recipe_path: &Path) -> Result<BuildRequest, RecipeError> {
        let base = recipe_dir(recipe_path);
        let anchored = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let field = |field: &'static str, message: String| RecipeError::Field {
            path: recipe_path.to_path_buf(),
            field,
            message,
        };
        let command = |name: &'static str, command: &Option<Command>| match command {
            None => Ok(None),
            Some(Command::Argv(argv)) if argv.is_empty() => {
                Err(field(name, "empty; name a program".to_string()))
            }
            Some(Command::Argv(argv)) => Ok(Some(argv.clone())),
            Some(Command::Line(line)) => split_command(line)
                .map(Some)
                .map_err(|e| field(name, e.to_string())),
        };
        let gconv = match self.extras.gconv.as_str() {
            "detect" => GconvChoice::Detect,
            "all" => GconvChoice::All,
            "off" => GconvChoice::Off,
            other => {
                return Err(field(
                    "extras.gconv",
                    format!("{other:?} is not detect, all or off"),
                ))
            }
        };
        let bins = self
            .programs
            .iter()
            .map(|name| {
                // A name is looked up in PATH; a relative path is the recipe's.
                if name.contains('/') {
                    anchored(Path::new(name)).to_string_lossy().into_owned()
                } else {
                    name.clone()
                }
            })
            .collect();
        let sysroot = self.sysroot.as_deref().map(anchored);
        let outside_sysroot: Vec<PathBuf> = sysroot
            .iter()
            .flat_map(|root| {
                let root = normalize(root);
                self.files
                    .iter()
                    .map(move |file| normalize(&anchored(&file.host)))
                    .filter(move |host| !host.starts_with(&root))
            })
            .collect();
        let adds = self
            .files
            .iter()
            .map(|file| {
                let host = anchored(&file.host);
                let outside = outside_sysroot.contains(&normalize(&host));
                AddSpec {
                    image: Some(file.image.clone().unwrap_or_else(|| {
                        // Without an image path the file lands where it is on the host.
                        Path::new("/").join(&file.host)
                    })),
                    reason: Some(provenance(&file.host, outside)),
                    host,
                }
            })
            .collect();
        // Checked here too (the flags' check would name --env and --workdir).
        if let Some(key) = self.env.keys().find(|key| !is_variable_name(key)) {
            return Err(field(
                "env",
                format!("{key:?} is not a variable name; use letters, digits and `_`"),
            ));
        }
        if let Some(dir) = self.workdir.as_ref().filter(|dir| !dir.starts_with('/')) {
            return Err(field(
                "workdir",
                format!("{dir:?} is not an absolute path; write it like \"/srv\""),
            ));
        }
        if let Some(user) = self.users.iter().find(|user| !is_user_name(user)) {
            return Err(field(
                "users",
                format!("{user:?} is not a user name; use letters, digits, `-` and `_`"),
            ));
        }
        let timeout = match self.tracing.timeout {
            Some(0) => {
                return Err(field(
                    "tracing.timeout",
                    "0 s; give seconds, like 120".into(),
                ))
            }
            Some(seconds) => std::time::Duration::from_secs(seconds),
            None => trace::DEFAULT_TIMEOUT,
        };
        let request = BuildRequest {
            bins,
            adds,
            trace: TraceRequest {
                probes: self.trace.clone(),
                // Probes run where the recipe is, as its relative paths are taken.
                cwd: std::path::absolute(&base).unwrap_or(base.clone()),
                timeout,
                net: self.tracing.net,
                exclude: self.tracing.exclude.clone(),
                allow_fail: self.tracing.allow_fail,
            },
            allow_missing: self.allow_missing,
            extras: Extras {
                nss: self.extras.nss,
                libgcc: self.extras.libgcc,
                terminfo: self.extras.terminfo,
                gconv,
                ca_certs: self.extras.ca_certs,
                users: self.users.clone(),
            },
            cmd: command("cmd", &self.cmd)?,
            entrypoint: command("entrypoint", &self.entrypoint)?.unwrap_or_default(),
            env: self.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            oci: OciSettings {
                tag: self.tag.clone(),
                workdir: self.workdir.clone(),
                user: self.user.clone(),
            },
            // Taken by [`Recipe::output_path`] when the command line gives no -o.
            output: None,
            format: self.output.as_ref().and_then(|o| o.format),
            outside_sysroot,
            ..BuildRequest::in_root(sysroot.as_deref())
        };
        check_trace(&request).map_err(|e| field("trace", e.to_string()))?;
        Ok(request)
    }

    /// Where the recipe writes its image: `[output] path`, under the recipe's directory.
    /// A recipe from a repository does not choose where on the host mkroot writes, so an
    /// absolute path, `..`, or a symlink leading out of that directory is refused (the
    /// command line's -o may name any place).
    pub fn output_path(&self, recipe_path: &Path) -> Result<Option<PathBuf>, RecipeError> {
        let Some(path) = self.output.as_ref().and_then(|o| o.path.as_deref()) else {
            return Ok(None);
        };
        let refuse = |why: &str| {
            RecipeError::Field {
            path: recipe_path.to_path_buf(),
            field: "output.path",
            message: format!(
                "{:?} {why}; a recipe writes under its own directory: name a path there, or give -o",
                path.display().to_string()
            ),
        }
        };
        if path.is_absolute() {
            return Err(refuse("is absolute"));
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(refuse("goes up with `..`"));
        }
        let base = recipe_dir(recipe_path);
        // `join` would drop a trailing `/`, which marks a directory.
        let mut text = base.join(path).into_os_string();
        if path.to_string_lossy().ends_with('/') {
            text.push("/");
        }
        let output = PathBuf::from(text);
        if !stays_under(&base, &output) {
            return Err(refuse(
                "leads out of the recipe's directory through a symlink",
            ));
        }
        Ok(Some(output))
    }
}

/// The directory a recipe's relative paths are taken from.
fn recipe_dir(recipe_path: &Path) -> PathBuf {
    recipe_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Whether `path` (under `base` by name) stays there once the symlinks of its nearest
/// existing ancestor are followed: the writer creates what is missing below that.
fn stays_under(base: &Path, path: &Path) -> bool {
    let Ok(base) = base.canonicalize() else {
        return false;
    };
    let mut existing = path;
    loop {
        // The output itself may be a symlink the writer would replace or follow.
        if let Ok(real) = existing.canonicalize() {
            return real.starts_with(&base);
        }
        match existing.parent() {
            Some(parent) => existing = parent,
            None => return false,
        }
    }
}

/// The manifest's reason for a recipe's file: where it came from, as the recipe wrote
/// it (relative paths stay relative, so the image does not depend on where the recipe
/// lives), and whether that is outside the recipe's directory or its sysroot.
fn provenance(host: &Path, outside_sysroot: bool) -> String {
    let beside = host.is_relative() && !host.components().any(|c| c == Component::ParentDir);
    let place = if beside {
        "in the recipe's directory"
    } else {
        "a host file outside the recipe's directory"
    };
    let sysroot = if outside_sysroot {
        ", not from its sysroot"
    } else {
        ""
    };
    format!("added by the recipe: {}, {place}{sysroot}", host.display())
}

/// A key `env` can set: not empty, without `=` or whitespace (what the flags accept).
fn is_variable_name(key: &str) -> bool {
    !key.is_empty() && !key.contains('=') && !key.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Recipe, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn a_full_recipe_becomes_a_build() {
        let recipe = parse(
            r#"
            programs = ["sh", "bin/tool"]
            cmd = "/bin/sh -c 'echo hi'"
            users = ["app"]
            user = "app"
            workdir = "/srv"
            tag = "x/y:1"
            env = { B = "2", A = "1" }
            [[files]]
            host = "data.txt"
            image = "/etc/data.txt"
            [output]
            path = "out/"
            format = "oci"
            [extras]
            terminfo = false
            "#,
        )
        .unwrap();
        let request = recipe.to_request(Path::new("/recipes/app.toml")).unwrap();
        assert_eq!(request.bins, ["sh", "/recipes/bin/tool"]);
        assert_eq!(
            request.cmd.as_deref(),
            Some(&["/bin/sh", "-c", "echo hi"].map(String::from)[..])
        );
        assert_eq!(request.adds[0].host, Path::new("/recipes/data.txt"));
        assert_eq!(request.env, ["A=1", "B=2"]);
        assert_eq!(request.oci.workdir.as_deref(), Some("/srv"));
        assert_eq!(request.output, None);
        assert_eq!(request.format, Some(OutputFormat::Oci));
        assert!(!request.extras.terminfo);
        assert!(request.extras.nss);
    }

    #[test]
    fn a_user_name_that_would_break_passwd_is_refused() {
        for name in ["", "a:b", "evil\nroot::0:0::/:/bin/sh", "a/b"] {
            let recipe = Recipe {
                users: vec![name.to_string()],
                ..parse("programs = [\"sh\"]\n").unwrap()
            };
            let err = recipe
                .to_request(Path::new("r.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("r.toml: users: "), "{err}");
            assert!(err.contains("is not a user name"), "{err}");
        }
    }

    #[test]
    fn misspelt_keys_are_errors() {
        assert!(parse("programs = [\"sh\"]\ncommand = \"sh\"\n").is_err());
        assert!(parse("programs = [\"sh\"]\n[output]\nformat = \"zip\"\n").is_err());
    }

    #[test]
    fn parse_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "programs = [\"sh\"]\n\nworkdir = 3\n").unwrap();
        let message = Recipe::load(&path).unwrap_err().to_string();
        assert!(message.contains("bad.toml:3:"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}
