//! One module per command.
pub mod build;
pub mod fetch;
pub mod history;
pub mod init;
pub mod manifest;
