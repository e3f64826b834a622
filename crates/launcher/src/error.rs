//! What can go wrong while launching, as one type; `main.rs` turns it into one line and
//! exit status 125.

use std::io;

use crate::cache::CacheError;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A setup step (a mount, a namespace, a map) failed; `step` says which and on what.
    #[error("{step}: {source}")]
    Setup {
        step: String,
        #[source]
        source: io::Error,
    },
    /// A bad option value; the message names the option and what to give instead.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The fork into the container's namespaces was refused before the kernel was asked.
    #[error("clone3 into new namespaces: {0}")]
    Fork(mkroot_common::clone3::ForkError),
    #[error(
        "the kernel forbids unprivileged user namespaces ({setting}); run launch as root, or allow them with sysctl"
    )]
    UserNamespacesForbidden { setting: String },
}

impl LaunchError {
    pub(crate) fn setup(step: impl Into<String>, source: io::Error) -> LaunchError {
        LaunchError::Setup {
            step: step.into(),
            source,
        }
    }
}

/// Turns a raw syscall return value into a `Result`, naming the step on failure.
pub(crate) fn check(
    ret: libc::c_long,
    step: impl FnOnce() -> String,
) -> Result<libc::c_long, LaunchError> {
    if ret < 0 {
        Err(LaunchError::setup(step(), io::Error::last_os_error()))
    } else {
        Ok(ret)
    }
}
