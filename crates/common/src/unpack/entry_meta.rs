//! What one tar entry says of itself: its headers, the GNU long-name and pax extension
//! headers before it, and the values they carry (name, link, mode, owner, mtime).

use std::io::{self, Read};

use tar::EntryType;

use super::*;

/// Extension headers seen so far, describing the next real entry.
#[derive(Default)]
pub(super) struct Extensions {
    pub(super) long_name: Option<Vec<u8>>,
    pub(super) long_link: Option<Vec<u8>>,
    pub(super) pax: Option<Vec<u8>>,
}

impl Extensions {
    /// Keeps `entry`'s data if it is an extension header (and says so), capped in size.
    pub(super) fn take(
        &mut self,
        entry: &mut tar::Entry<'_, PipedReader>,
    ) -> Result<bool, UnpackError> {
        // GNU names end in NULs (trimmed); PAX records are kept as they are.
        let (slot, cap, what, is_name) = match entry.header().entry_type() {
            EntryType::GNULongName => (
                Some(&mut self.long_name),
                MAX_LONG_NAME,
                "GNU long name",
                true,
            ),
            EntryType::GNULongLink => (
                Some(&mut self.long_link),
                MAX_LONG_NAME,
                "GNU long link name",
                true,
            ),
            EntryType::XHeader => (
                Some(&mut self.pax),
                MAX_PAX_HEADER,
                "PAX extended header",
                false,
            ),
            // Global PAX records (comments, a default mtime) change nothing we keep.
            EntryType::XGlobalHeader => (None, MAX_PAX_HEADER, "PAX global header", false),
            _ => return Ok(false),
        };
        let data = read_extension(entry, cap, what).map_err(|problem| UnpackError::BadEntry {
            entry: EntryName(entry.header().path_bytes().into_owned()),
            problem,
        })?;
        if let Some(slot) = slot {
            *slot = Some(if is_name { trim_nuls(data) } else { data });
        }
        Ok(true)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// One real entry, its extension headers folded in.
pub(super) struct EntryMeta {
    pub(super) path: Vec<u8>,
    pub(super) link: Option<Vec<u8>>,
    pub(super) kind: EntryType,
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) mtime: (i64, u32),
    pub(super) size: u64,
}

impl EntryMeta {
    pub(super) fn read(
        entry: &tar::Entry<'_, PipedReader>,
        ext: Extensions,
    ) -> Result<EntryMeta, String> {
        let header = entry.header();
        let field = |name: &str, err: io::Error| format!("bad {name} field in the header: {err}");
        // Some writers leave numeric fields blank (all NULs or spaces); tar reads those as 0.
        let old = header.as_old();
        let number = |value: io::Result<u64>, raw: &[u8], name: &str| match value {
            Ok(n) => Ok(n),
            Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
            Err(err) => Err(field(name, err)),
        };
        let mut meta = EntryMeta {
            path: ext
                .long_name
                .unwrap_or_else(|| header.path_bytes().into_owned()),
            link: ext
                .long_link
                .or_else(|| header.link_name_bytes().map(|l| l.into_owned())),
            kind: header.entry_type(),
            mode: number(header.mode().map(u64::from), &old.mode, "mode")? as u32,
            uid: number(header.uid(), &old.uid, "uid")?,
            gid: number(header.gid(), &old.gid, "gid")?,
            mtime: (number(header.mtime(), &old.mtime, "mtime")? as i64, 0),
            size: entry.size(),
        };
        if let Some(pax) = &ext.pax {
            meta.apply_pax(pax)?;
        }
        Ok(meta)
    }

    /// PAX records override the header; the tar crate in raw mode leaves them to us.
    pub(super) fn apply_pax(&mut self, pax: &[u8]) -> Result<(), String> {
        for record in tar::PaxExtensions::new(pax) {
            let record = record.map_err(|_| "malformed PAX extended header".to_string())?;
            let key = record.key_bytes();
            let value = record.value_bytes();
            let number = || -> Result<u64, String> {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("bad PAX {} value", key.escape_ascii()))
            };
            match key {
                b"path" => self.path = value.to_vec(),
                b"linkpath" => self.link = Some(value.to_vec()),
                b"uid" => self.uid = number()?,
                b"gid" => self.gid = number()?,
                b"mtime" => self.mtime = parse_pax_time(value)?,
                // A size that disagrees with the header would make this reader and others
                // see different archives; files over 8 GiB (the only honest use) are refused.
                b"size" if number()? != self.size => {
                    return Err("PAX size differs from the header's size (not supported)".into())
                }
                key if key.starts_with(b"GNU.sparse.") => {
                    return Err(
                        "PAX sparse file: not supported (re-create the archive without --sparse)"
                            .into(),
                    )
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A PAX time, `1700000000` or `1700000000.123456789` (possibly negative).
pub(super) fn parse_pax_time(value: &[u8]) -> Result<(i64, u32), String> {
    let bad = || format!("bad PAX mtime {}", value.escape_ascii());
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().map_err(|_| bad())?;
    Ok((secs, nanos))
}

/// Reads an extension header's data, refusing more than `cap` bytes.
pub(super) fn read_extension(
    entry: &mut tar::Entry<'_, PipedReader>,
    cap: u64,
    what: &str,
) -> Result<Vec<u8>, String> {
    if entry.size() > cap {
        return Err(format!(
            "{what} of {} bytes (more than {} allowed)",
            entry.size(),
            cap
        ));
    }
    let mut data = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut data)
        .map_err(|e| format!("{what} is truncated: {e}"))?;
    if data.len() as u64 != entry.size() {
        return Err(format!("{what} is truncated"));
    }
    Ok(data)
}

pub(super) fn trim_nuls(mut name: Vec<u8>) -> Vec<u8> {
    while name.last() == Some(&0) {
        name.pop();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_nanoseconds() {
        assert_eq!(
            parse_pax_time(b"1700000000.5").unwrap(),
            (1700000000, 500_000_000)
        );
        assert_eq!(parse_pax_time(b"12").unwrap(), (12, 0));
        assert!(parse_pax_time(b"12.x").is_err());
    }
}
