//! Errors as one line, for both programs: clap (used by the binaries only) renders a
//! usage error as a paragraph, a tip and a usage block, and a library error may quote
//! input with line breaks in it; users (and scripts reading stderr) get one line either
//! way.

/// Reports a command line that did not parse, as clap rendered the problem: one line,
/// `PROGRAM: problem; see PROGRAM --help`. Returns `status`, the exit status. (Help and
/// version, which clap also answers as errors, are printed by the program as rendered.)
pub fn report_usage_error(rendered: &str, program: &str, status: u8) -> u8 {
    eprintln!("{program}: {}", one_line(rendered, program));
    status
}

/// `message` on one line: each line break becomes a space (nothing else changes, so a
/// quoted path keeps its spaces).
pub fn single_line(message: &str) -> String {
    message.replace(['\n', '\r'], " ")
}

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
    fn line_breaks_become_spaces() {
        assert_eq!(single_line("a\nb\r\nc  d"), "a b  c  d");
    }

    #[test]
    fn keeps_the_first_paragraph_only() {
        let rendered = "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use '-- --bogus'\n\nUsage: launch [OPTIONS] <IMAGE>\n";
        assert_eq!(
            one_line(rendered, "launch"),
            "unexpected argument '--bogus' found; see launch --help"
        );
    }
}
