//! What an image says to run, and how: the one description both image kinds carry. The
//! builder writes it (into the manifest of a rootfs, into the config of an OCI image);
//! the launcher starts from it and lays the command line over it.
//!
//! A mkroot manifest records the command as one argv and the environment; an OCI config
//! splits the command into Entrypoint (fixed) and Cmd (replaced by the user's command) and
//! adds a working directory and a user.

use oci_spec::image::ImageConfiguration;

/// The run defaults of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunDefaults {
    /// The fixed part of the command; `cmd` follows it.
    pub entrypoint: Vec<String>,
    /// The default arguments (the whole command when there is no entrypoint).
    pub cmd: Vec<String>,
    /// `KEY=VALUE`, in the order given.
    pub env: Vec<String>,
    /// Absolute path the command starts in; `None` for `/`.
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as runtimes read it; `None` for root.
    pub user: Option<String>,
}

impl RunDefaults {
    /// The whole default command: the entrypoint, then the arguments.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

impl RunDefaults {
    pub fn from_config(config: &ImageConfiguration) -> RunDefaults {
        let Some(config) = config.config() else {
            return RunDefaults::default();
        };
        let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
        let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        RunDefaults {
            entrypoint: list(config.entrypoint()),
            cmd: list(config.cmd()),
            env: list(config.env()),
            working_dir: text(config.working_dir()),
            user: text(config.user()),
        }
    }

    /// The defaults in the config JSON `bytes` (as kept beside a cached image).
    pub fn from_config_json(bytes: &[u8]) -> Result<RunDefaults, String> {
        ImageConfiguration::from_reader(bytes)
            .map(|config| RunDefaults::from_config(&config))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_the_entrypoint_then_the_arguments() {
        let defaults = RunDefaults {
            entrypoint: vec!["/bin/entry".into(), "-x".into()],
            cmd: vec!["arg".into()],
            ..RunDefaults::default()
        };
        assert_eq!(defaults.argv(), ["/bin/entry", "-x", "arg"]);
        assert!(RunDefaults::default().argv().is_empty());
    }
}
