//! The stream's configuration files: treefile, repo files, lockfiles.

pub mod lockfile;
pub mod treefile;
