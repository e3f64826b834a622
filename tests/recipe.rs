//! End-to-end tests of recipes (`mkroot -f image.toml`) and `--check`, on copies of the
//! example recipes in fixtures/recipes/.

use mkroot_e2e::oci_build::{assert_success, copy_recipes, member_of, mkroot_at, recipes_dir};
use std::path::Path;

const EPOCH: u64 = 1_700_000_000;

fn recipe_dir() -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    copy_recipes(temp.path());
    temp
}

/// Runs mkroot with `args` in `dir` at [`EPOCH`]; fails the test, naming the build as
/// `what`, with mkroot's output unless it succeeds.
fn build_in(dir: &Path, args: &[&str], what: &str) {
    assert_success(&mkroot_at(args, dir, EPOCH), what);
}

#[test]
fn a_recipe_builds_the_same_bytes_twice() {
    let temp = recipe_dir();
    let dir = temp.path();
    // The recipe's own output path, relative to the recipe...
    build_in(dir, &["-f", "greeting.toml", "-q"], "recipe build");
    // ...and the same recipe run from elsewhere, with the output overridden.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let recipe = dir.join("greeting.toml");
    let out = mkroot_at(
        &["-f", recipe.to_str().unwrap(), "-o", "again.tgz", "-q"],
        &elsewhere,
        EPOCH,
    );
    assert_success(&out, "recipe build from another directory");
    let first = std::fs::read(dir.join("greeting.tgz")).unwrap();
    assert!(
        first == std::fs::read(elsewhere.join("again.tgz")).unwrap(),
        "builds differ"
    );

    // What the recipe asked for is in the image.
    let greeting = member_of(&first, "etc/greeting").expect("/etc/greeting in the image");
    assert!(greeting == std::fs::read(dir.join("greeting.txt")).unwrap());
    let passwd = String::from_utf8(member_of(&first, "etc/passwd").unwrap()).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("app:")), "{passwd}");
    assert!(
        member_of(&first, "usr/share/terminfo").is_none(),
        "extras.terminfo = false"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&member_of(&first, ".mkroot/manifest.json").unwrap()).unwrap();
    assert_eq!(
        manifest["cmd"],
        serde_json::json!(["/bin/sh", "-c", "cat /etc/greeting"])
    );
    assert!(manifest["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "GREETING_LANG=en"));
}

#[test]
fn an_oci_recipe_builds_a_tagged_reproducible_image() {
    let temp = recipe_dir();
    let dir = temp.path();
    build_in(dir, &["-f", "greeting-oci.toml", "-q"], "OCI recipe");
    build_in(
        dir,
        &["-f", "greeting-oci.toml", "-q", "-o", "second.oci.tar"],
        "OCI recipe again",
    );
    let first = std::fs::read(dir.join("greeting.oci.tar")).unwrap();
    assert!(
        first == std::fs::read(dir.join("second.oci.tar")).unwrap(),
        "builds differ"
    );
    let docker: serde_json::Value =
        serde_json::from_slice(&member_of(&first, "manifest.json").unwrap()).unwrap();
    assert_eq!(
        docker[0]["RepoTags"],
        serde_json::json!(["mkroot-fixtures/greeting:1"])
    );
    let config_name = docker[0]["Config"].as_str().unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&member_of(&first, config_name).unwrap()).unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["cat /etc/greeting"])
    );
    assert_eq!(config["config"]["User"], "app");
    assert_eq!(config["config"]["WorkingDir"], "/etc");
}

fn check(dir: &Path, recipe: &str, image: &str) -> (Option<i32>, String, String) {
    let out = mkroot_at(&["-f", recipe, "--check", image], dir, EPOCH);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The stdout of `mkroot -f RECIPE --check IMAGE` in `dir`; fails the test with both
/// streams unless it exits with `expected` (0: the image matches, 1: it differs).
#[track_caller]
fn check_exits(dir: &Path, recipe: &str, image: &str, expected: i32) -> String {
    let (code, stdout, stderr) = check(dir, recipe, image);
    assert_eq!(
        code,
        Some(expected),
        "{recipe} --check {image}: {stdout}{stderr}"
    );
    stdout
}

#[test]
fn check_passes_on_a_fresh_image_and_names_a_changed_host_file() {
    let temp = recipe_dir();
    let dir = temp.path();
    build_in(dir, &["-f", "greeting.toml", "-q"], "build");
    build_in(dir, &["-f", "greeting-oci.toml", "-q"], "build OCI");
    build_in(
        dir,
        &["-f", "greeting.toml", "-q", "-o", "tree/"],
        "build a directory",
    );
    for (recipe, image) in [
        ("greeting.toml", "greeting.tgz"),
        ("greeting-oci.toml", "greeting.oci.tar"),
        ("greeting.toml", "tree"),
    ] {
        let stdout = check_exits(dir, recipe, image, 0);
        assert!(stdout.contains("matches"), "{stdout}");
    }

    // The host file the recipe adds changes: --check says which, one line, exit 1.
    let host = dir.join("greeting.txt");
    std::fs::write(&host, "a different greeting\n").unwrap();
    for (recipe, image) in [
        ("greeting.toml", "greeting.tgz"),
        ("greeting-oci.toml", "greeting.oci.tar"),
        ("greeting.toml", "tree"),
    ] {
        let stdout = check_exits(dir, recipe, image, 1);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{image}: {stdout}");
        assert!(lines[0].contains("/etc/greeting"), "{}", lines[0]);
        assert!(lines[0].contains(&*host.to_string_lossy()), "{}", lines[0]);
    }

    // A change to the recipe itself shows too: a new file and another command.
    std::fs::write(
        &host,
        std::fs::read(recipes_dir().join("greeting.txt")).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("extra.txt"), "extra\n").unwrap();
    let recipe = std::fs::read_to_string(dir.join("greeting.toml")).unwrap();
    let changed = recipe
        .replace("cat /etc/greeting", "cat /etc/extra")
        .replacen(
            "[output]",
            "[[files]]\nhost = \"extra.txt\"\nimage = \"/etc/extra\"\n\n[output]",
            1,
        );
    std::fs::write(dir.join("changed.toml"), changed).unwrap();
    let stdout = check_exits(dir, "changed.toml", "greeting.tgz", 1);
    assert!(
        stdout.lines().any(|l| l.starts_with("added: /etc/extra")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.contains("default command")),
        "{stdout}"
    );
    assert!(!stdout.contains("/etc/greeting"), "{stdout}");
}

#[test]
fn check_compares_the_run_settings_of_an_oci_image() {
    let temp = recipe_dir();
    let dir = temp.path();
    build_in(dir, &["-f", "greeting-oci.toml", "-q"], "build OCI");
    build_in(
        dir,
        &["-f", "greeting-oci.toml", "-q", "-o", "layout/"],
        "build an OCI layout directory",
    );
    let recipe = std::fs::read_to_string(dir.join("greeting-oci.toml")).unwrap();
    let changed = recipe
        .replace("workdir = \"/etc\"", "workdir = \"/\"")
        .replace("greeting:1", "greeting:2");
    assert!(changed != recipe);
    std::fs::write(dir.join("changed.toml"), changed).unwrap();
    for image in ["greeting.oci.tar", "layout"] {
        check_exits(dir, "greeting-oci.toml", image, 0);
        let stdout = check_exits(dir, "changed.toml", image, 1);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            [
                "changed: the image's tag",
                "changed: the image's working directory"
            ],
            "{image}"
        );
    }
    // An image built for another machine than the recipe's programs are for: its
    // config says so, and the manifest and index name the new config by its digest.
    let layout = dir.join("layout");
    let configs: Vec<(String, serde_json::Value)> = json_blobs(&layout)
        .into_iter()
        .filter(|(_, json)| json.get("rootfs").is_some())
        .collect();
    assert_eq!(configs.len(), 1, "one config blob");
    let (hex, mut config) = configs.into_iter().next().unwrap();
    let other = match config["architecture"].as_str() {
        Some("s390x") => "riscv64",
        _ => "s390x",
    };
    config["architecture"] = other.into();
    swap_blob(&layout, &hex, config.to_string().into_bytes());
    let stdout = check_exits(dir, "greeting-oci.toml", "layout", 1);
    assert_eq!(stdout, "changed: the image's architecture\n");

    // A config changed without its digest is a corrupt image, and said to be one.
    let (hex, mut config) = json_blobs(&layout)
        .into_iter()
        .find(|(_, json)| json.get("rootfs").is_some())
        .unwrap();
    config["architecture"] = "amd64".into();
    let blob = layout.join("blobs/sha256").join(&hex);
    std::fs::write(&blob, config.to_string()).unwrap();
    let (code, _, stderr) = check(dir, "greeting-oci.toml", "layout");
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the config does not match its digest"),
        "{stderr}"
    );
}

/// The blobs of an OCI layout that are JSON, by hex digest.
fn json_blobs(layout: &Path) -> Vec<(String, serde_json::Value)> {
    let mut found = Vec::new();
    for blob in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let path = blob.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            let hex = path.file_name().unwrap().to_string_lossy().into_owned();
            found.push((hex, json));
        }
    }
    found
}

/// Replaces blob `old` of an OCI layout with `bytes`, and repoints what names it (a
/// manifest, whose own digest then changes too, and the index) at the new digest.
fn swap_blob(layout: &Path, old: &str, bytes: Vec<u8>) {
    use sha2::Digest;
    let blobs = layout.join("blobs/sha256");
    let new = hex::encode(sha2::Sha256::digest(&bytes));
    std::fs::write(blobs.join(&new), &bytes).unwrap();
    std::fs::remove_file(blobs.join(old)).unwrap();
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    if repoint(&mut index, old, &new, bytes.len()) {
        std::fs::write(&index_path, index.to_string()).unwrap();
    }
    for (hex, mut json) in json_blobs(layout) {
        if repoint(&mut json, old, &new, bytes.len()) {
            swap_blob(layout, &hex, json.to_string().into_bytes());
        }
    }
}

/// Points every descriptor in `json` naming `sha256:old` at `new`, of `size` bytes.
fn repoint(json: &mut serde_json::Value, old: &str, new: &str, size: usize) -> bool {
    let mut changed = false;
    if let Some(object) = json.as_object_mut() {
        if object.get("digest").and_then(|d| d.as_str()) == Some(&format!("sha256:{old}")) {
            object.insert("digest".into(), format!("sha256:{new}").into());
            object.insert("size".into(), size.into());
            changed = true;
        }
    }
    match json {
        serde_json::Value::Object(object) => {
            for value in object.values_mut() {
                changed |= repoint(value, old, new, size);
            }
        }
        serde_json::Value::Array(items) => {
            for value in items {
                changed |= repoint(value, old, new, size);
            }
        }
        _ => {}
    }
    changed
}

#[test]
fn bad_recipes_get_one_line_errors() {
    let temp = recipe_dir();
    let dir = temp.path();
    let cases = [
        (
            "typo.toml",
            "programs = [\"sh\"]\ncommand = \"sh\"\n",
            "typo.toml:2",
        ),
        ("syntax.toml", "programs = [\"sh\"\n", "syntax.toml:"),
        (
            "gconv.toml",
            "programs = [\"sh\"]\n[extras]\ngconv = \"some\"\n",
            "extras.gconv",
        ),
        (
            "missing.toml",
            "programs = [\"sh\"]\n[[files]]\nhost = \"nope.txt\"\n",
            "nope.txt",
        ),
    ];
    for (name, text, named) in cases {
        std::fs::write(dir.join(name), text).unwrap();
        let out = mkroot_at(&["-f", name, "-o", "x.tgz"], dir, EPOCH);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(named), "{name}: {stderr}");
    }
    // A recipe with flags that describe the image is a usage error.
    let out = mkroot_at(&["-f", "greeting.toml", "--bins", "ls"], dir, EPOCH);
    assert_eq!(out.status.code(), Some(2));
    // --check on something that is not an image: exit 2, not "differs".
    std::fs::write(dir.join("not-an-image.tgz"), "plain text").unwrap();
    let (code, _, stderr) = check(dir, "greeting.toml", "not-an-image.tgz");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not-an-image.tgz"), "{stderr}");
}
