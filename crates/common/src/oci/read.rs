//! Reading OCI layouts, oci-archives and docker-archives (filled by issue 6).
