//! launch: run a root filesystem image in a container with full namespace isolation.
