//! Command-line usage errors as one line, for both programs: clap renders a paragraph,
//! a tip and a usage block; users (and scripts reading stderr) get the first paragraph.

/// The first paragraph of a rendered usage error, joined into one line, with a pointer to
/// `PROGRAM --help`.
pub fn one_line(rendered: &str, program: &str) -> String {
    let paragraph: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = paragraph.join(" ");
    let problem = joined.strip_prefix("error: ").unwrap_or(&joined);
    format!("{problem}; see {program} --help")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_paragraph_only() {
        let rendered = "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use '-- --bogus'\n\nUsage: launch [OPTIONS] <IMAGE>\n";
        assert_eq!(
            one_line(rendered, "launch"),
            "unexpected argument '--bogus' found; see launch --help"
        );
    }
}
