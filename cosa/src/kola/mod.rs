//! The kola stage: test selection, VMs in QEMU, the harness that runs tests
//! in them, and the reports. [`run`], [`list`] and [`run_vm`] are its entry
//! points; the command line only converts its options into theirs.

pub mod bindro;
mod build;
pub mod builtin;
pub mod checks;
pub mod harness;
mod httpd;
mod interactive;
pub mod kernelboot;
pub mod machine;
pub mod protocol;
pub mod qemu;
pub mod report;
mod run;
pub mod scheduler;
pub mod select;
mod ssh;
pub mod test;
pub mod testiso;
mod upgrade;

pub use build::{list, SelectOptions};
pub use interactive::{run_vm, RunVmOptions, RunVmOutcome};
pub use run::{run, RunOptions, RunOutcome};
pub use upgrade::{run_upgrade, UpgradeOptions, UpgradeOutcome};
