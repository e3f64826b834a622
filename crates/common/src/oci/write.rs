//! Writing an OCI layout, as a directory or a tar (filled by issue 6).
