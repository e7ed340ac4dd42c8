//! demo-agent: the demo stream's in-guest agent.
//!
//! `firstboot` applies an Ignition config from QEMU's fw_cfg; `serve` is the
//! guest side of kola (protocol: docs/agent-protocol.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod console;
mod ignition;
mod serve;
mod sysinfo;

#[derive(Debug, Parser)]
#[command(name = "demo-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Apply the Ignition (spec 3.0.0–3.4.0) config from fw_cfg; fail loudly
    /// on an invalid one before writing anything.
    Firstboot(ignition::FirstbootOpts),
    /// Start enabled units, then serve kola over the virtio-serial port.
    Serve(serve::ServeOpts),
    /// Called by /tmp/autopkgtest-reboot: record MARK and reboot.
    #[command(hide = true)]
    RebootRequest {
        /// Control socket of the running `serve`.
        #[arg(long)]
        control: PathBuf,
        mark: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Firstboot(o) => ignition::firstboot(&o),
        Cmd::Serve(o) => serve::serve(o),
        Cmd::RebootRequest { control, mark } => serve::reboot_request(&control, &mark),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
