//! Compose: packages into an ostree commit.

pub mod dnf;
