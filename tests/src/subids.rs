//! Subordinate id files of a test's own: `launch --userns` records its range in
//! /etc/subuid and /etc/subgid, so every test that uses it runs launch in a mount
//! namespace of its own where those two paths are this test's files. The host's files are
//! never written, and a `useradd` of a parallel test never races a launch.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A pre_exec hook: a few system calls made between fork and exec.
pub type HostView = Box<dyn FnMut() -> std::io::Result<()> + Send + Sync>;

/// Files to stand in for /etc/subuid and /etc/subgid.
pub struct SubidFiles {
    dir: tempfile::TempDir,
}

impl SubidFiles {
    pub fn new(subuid: &str, subgid: &str) -> SubidFiles {
        let dir = tempfile::Builder::new()
            .prefix("launch-e2e-subids-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("subuid"), subuid).expect("subuid");
        std::fs::write(dir.path().join("subgid"), subgid).expect("subgid");
        SubidFiles { dir }
    }

    /// Empty files: launch picks its range from 100000.
    pub fn empty() -> SubidFiles {
        SubidFiles::new("", "")
    }

    pub fn subuid(&self) -> String {
        std::fs::read_to_string(self.path("subuid")).expect("read subuid")
    }

    pub fn subgid(&self) -> String {
        std::fs::read_to_string(self.path("subgid")).expect("read subgid")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The hook that shows launch these files as /etc/subuid and /etc/subgid; with
    /// `fresh_var_cache`, also an empty tmpfs over /var/cache, so root's default image
    /// cache (/var/cache/mkroot-launch) is the test's own.
    pub fn view(&self, fresh_var_cache: bool) -> HostView {
        let c = |name: &str| CString::new(self.path(name).as_os_str().as_bytes()).unwrap();
        let (subuid, subgid) = (c("subuid"), c("subgid"));
        Box::new(move || {
            crate::attacks::in_own_mount_namespace(|| {
                let bind = |source: &CString, target: &std::ffi::CStr| {
                    // SAFETY: a bind mount of valid C strings.
                    unsafe {
                        libc::mount(
                            source.as_ptr(),
                            target.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND,
                            std::ptr::null(),
                        )
                    }
                };
                let mut ret = bind(&subuid, c"/etc/subuid");
                if ret == 0 {
                    ret = bind(&subgid, c"/etc/subgid");
                }
                if ret == 0 && fresh_var_cache {
                    // SAFETY: a mount of constant strings.
                    ret = unsafe {
                        libc::mount(
                            c"none".as_ptr(),
                            c"/var/cache".as_ptr(),
                            c"tmpfs".as_ptr(),
                            0,
                            std::ptr::null(),
                        )
                    };
                }
                ret
            })
        })
    }

    /// Gives `command` this view (see [`SubidFiles::view`]).
    pub fn apply(&self, command: &mut std::process::Command, fresh_var_cache: bool) {
        // SAFETY: the hook makes only system calls.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(command, self.view(fresh_var_cache))
        };
    }
}
