//! Ages as `launch cache prune --older-than` takes them and `launch cache ls` prints them.

use std::time::Duration;

/// `--older-than`: a number with s, m, h or d (`7d`, `12h`).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("--older-than {text}: give a number with s, m, h or d, such as 12h or 7d");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| invalid())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(invalid()),
    };
    Ok(Duration::from_secs(secs))
}

/// `90s`, `45m`, `36h`, `7d`: seconds up to two minutes, minutes up to two hours, hours
/// up to two days, then days.
pub(super) fn human_age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_their_unit() {
        assert_eq!(parse_age("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_age("12h").unwrap().as_secs(), 12 * 3600);
        assert_eq!(parse_age("7d").unwrap().as_secs(), 7 * 86_400);
        assert!(parse_age("7").is_err());
        assert!(parse_age("d").is_err());
        assert!(parse_age("1w").is_err());
    }
}
