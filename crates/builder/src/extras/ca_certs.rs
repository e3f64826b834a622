//! The system's CA certificates, and the TLS library's configuration, for programs that
//! link a TLS library (OpenSSL, GnuTLS, NSS, or libcurl over one of them). They read the
//! bundle when they verify a peer; without it `curl https://...` fails with "error
//! setting certificate file" before it connects.

use super::PlanView;
use crate::addition::Addition;
use crate::resolve::Resolution;
use std::path::PathBuf;

/// Library names that mean a program verifies TLS peers.
const TLS_LIBRARIES: &[&str] = &["libssl", "libcrypto", "libgnutls", "libnss3", "libcurl"];

/// Debian's bundle, the file every TLS library there is built to read.
const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// OpenSSL's own directory (`openssl version -d`): its configuration, read at start,
/// and its default CA file, a link to the bundle.
const OPENSSL_FILES: &[&str] = &["/usr/lib/ssl/openssl.cnf", "/usr/lib/ssl/cert.pem"];

fn is_tls_library(name: &str) -> bool {
    TLS_LIBRARIES.iter().any(|prefix| name.starts_with(prefix))
}

/// The first program that links a TLS library, and whether that library is OpenSSL's.
fn tls_program(objects: &[Resolution]) -> Option<(PathBuf, bool)> {
    let linking = |r: &&Resolution| r.libraries.iter().any(|l| is_tls_library(&l.name));
    let program = objects.iter().find(linking)?;
    let openssl = (objects.iter())
        .flat_map(|r| r.libraries.iter())
        .any(|l| l.name.starts_with("libssl") || l.name.starts_with("libcrypto"));
    Some((program.program.clone(), openssl))
}

/// The root's CA bundle (and OpenSSL's files where OpenSSL is loaded), when a program
/// links a TLS library; what the root lacks is left out, as on the host.
pub fn additions(view: &PlanView) -> Vec<Addition> {
    let Some((program, openssl)) = tls_program(view.objects) else {
        return Vec::new();
    };
    let program = program.display();
    let bundle = std::iter::once((BUNDLE, format!("CA certificates for {program}")));
    let openssl_files = OPENSSL_FILES
        .iter()
        .filter(|_| openssl)
        .map(|path| (*path, format!("OpenSSL configuration for {program}")));
    bundle
        .chain(openssl_files)
        .filter(|(path, _)| {
            view.root
                .resolve(path.as_ref())
                .is_ok_and(|host| host.is_file())
        })
        .map(|(path, reason)| Addition::root_file(path, reason))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::ElfClass;
    use crate::resolve::LoadedLibrary;
    use crate::search::Abi;

    fn program(path: &str, libraries: &[&str]) -> Resolution {
        Resolution {
            program: path.into(),
            abi: Abi {
                class: ElfClass::Elf64,
                little_endian: true,
                machine: 62,
            },
            interpreter: None,
            libraries: (libraries.iter())
                .map(|name| LoadedLibrary {
                    name: name.to_string(),
                    path: format!("/usr/lib/{name}").into(),
                })
                .collect(),
            missing: Vec::new(),
        }
    }

    #[test]
    fn a_program_linking_a_tls_library_is_found_and_openssl_told_apart() {
        let plain = program("/usr/bin/ls", &["libc.so.6"]);
        let curl = program("/usr/bin/curl", &["libcurl.so.4", "libssl.so.3"]);
        let gnutls = program("/usr/bin/wget", &["libgnutls.so.30"]);
        assert_eq!(tls_program(std::slice::from_ref(&plain)), None);
        assert_eq!(
            tls_program(&[plain.clone(), curl]),
            Some(("/usr/bin/curl".into(), true))
        );
        assert_eq!(
            tls_program(&[plain, gnutls]),
            Some(("/usr/bin/wget".into(), false))
        );
    }
}
