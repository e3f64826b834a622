//! The registry round trip that proves interop: an OCI archive pushed to a real registry
//! (Debian's docker-registry, on loopback) with skopeo, copied back into a new archive,
//! and launched.

use mkroot_e2e::launch::{describe, launch, stdout};
use mkroot_e2e::registry::{oci_archive, skopeo, LocalRegistry};

#[test]
fn an_image_pushed_to_a_registry_and_pulled_back_runs() {
    let dir = tempfile::tempdir().unwrap();
    let archive = oci_archive(dir.path());
    let registry = LocalRegistry::start();
    let reference = registry.reference("mkroot-e2e/round-trip:v1");
    let archive_ref = format!("oci-archive:{}", archive.display());
    skopeo(&["copy", &archive_ref, &reference, "--dest-tls-verify=false"]);

    let inspected: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &reference])).unwrap();
    assert_eq!(inspected["Os"], "linux");
    assert!(!inspected["Layers"].as_array().unwrap().is_empty());

    let back = dir.path().join("back.oci.tar");
    let back_ref = format!("oci-archive:{}", back.display());
    skopeo(&["copy", "--src-tls-verify=false", &reference, &back_ref]);
    drop(registry);

    let out = launch([
        "--cache-dir".as_ref(),
        dir.path().join("cache").as_os_str(),
        back.as_os_str(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        "echo round trip $((6 * 7))".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "round trip 42\n");
}
