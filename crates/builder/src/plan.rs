//! The image plan: every file of the image, where it comes from on the host, and why.
