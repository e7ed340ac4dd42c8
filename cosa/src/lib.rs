//! cosa: build and test image-based Linux operating systems.
//!
//! The pipeline's stages live in their own modules; `cmd` holds one entry point
//! per command of the CLI (`cli`), and `main.rs` only dispatches to them.

pub mod arch;
pub mod builds;
pub mod cli;
pub mod cmd;
pub mod compose;
pub mod config;
pub mod cpio;
pub mod image;
pub mod kola;
pub mod live;
pub mod logging;
pub mod oci;
pub mod package;
pub mod platform;
pub mod release;
pub mod sbom;
pub mod sign;
