//! Errors as one line, for both programs: clap renders a usage error as a paragraph, a
//! tip and a usage block, and a library error may quote input with line breaks in it;
//! users (and scripts reading stderr) get one line either way.

/// What a program does with clap's answer when its command line does not parse: `--help`
/// and `--version` print as clap renders them (exit 0); a usage error is printed as one
/// line, `PROGRAM: problem; see PROGRAM --help`, and ends with `status`. Returns the
/// exit status.
pub fn report_clap_error(error: clap::Error, program: &str, status: u8) -> u8 {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return 0;
    }
    eprintln!("{program}: {}", one_line(&error.to_string(), program));
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
