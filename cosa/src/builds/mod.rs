//! The workdir and its build history: `builds.json`, `meta.json`, versions, the lock,
//! and `init`, which makes a workdir.

pub mod artifact;
pub mod diff;
pub mod history;
pub mod init;
pub mod meta;
pub mod retention;
pub mod workdir;

pub use history::History;
pub use meta::Meta;
pub use workdir::Workdir;
