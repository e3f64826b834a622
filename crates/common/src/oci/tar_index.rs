//! An archive's members found in place: the tar is indexed once (cleaned names, data
//! offsets and sizes, seeking over the data), so no blob is unpacked to be read.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::read::OciError;

/// The regular files of a tar: cleaned name -> (data offset, size). Seeks over the data.
/// Symlinks and hard links to members (older `docker save` links shared layers) are
/// entered under their own name too.
pub(super) fn index_tar(path: &Path, file: File) -> Result<HashMap<String, (u64, u64)>, OciError> {
    let bad = |detail: String| OciError::Invalid {
        path: path.to_path_buf(),
        what: "the archive".to_string(),
        detail,
    };
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut members = HashMap::new();
    let mut links = Vec::new();
    for entry in archive
        .entries_with_seek()
        .map_err(|e| bad(e.to_string()))?
    {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = clean_name(&entry.path_bytes());
        let kind = entry.header().entry_type();
        if kind.is_file() {
            members.insert(name, (entry.raw_file_position(), entry.size()));
        } else if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let target = if kind.is_symlink() {
                    let base = name.rsplit_once('/').map_or("", |(dir, _)| dir);
                    clean_name(format!("{base}/{}", String::from_utf8_lossy(&target)).as_bytes())
                } else {
                    clean_name(&target)
                };
                links.push((name, target));
            }
        }
    }
    for (name, target) in links {
        if let Some(&found) = members.get(&target) {
            members.insert(name, found);
        }
    }
    Ok(members)
}

/// `./blobs/sha256/x` and `blobs//sha256/x` are `blobs/sha256/x`; `..` goes up, never
/// above the top.
pub(super) fn clean_name(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}
