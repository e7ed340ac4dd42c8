//! The stream's configuration files: treefile, repo files, lockfiles.

pub mod image;
pub mod lockfile;
pub mod treefile;
