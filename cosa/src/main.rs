//! The `cosa` command: parse the command line and dispatch, nothing else.

use clap::Parser;
use cosa::cli::{Cli, Cmd};

fn main() {
    let cli = Cli::parse();
    cosa::logging::init();
    let result = match cli.cmd {
        Cmd::Init(opts) => cosa::cmd::init::run(&opts),
        Cmd::Manifest(opts) => cosa::cmd::manifest::run(&cli.global, &opts),
        Cmd::Fetch(opts) => cosa::cmd::fetch::run(&cli.global, &opts),
        Cmd::Build(opts) => cosa::cmd::build::run(&cli.global, &opts),
        Cmd::List(opts) => cosa::cmd::history::list(&cli.global, &opts),
        Cmd::Meta(opts) => cosa::cmd::history::meta(&cli.global, &opts),
        Cmd::Diff(opts) => cosa::cmd::history::diff(&cli.global, &opts),
        Cmd::Prune(opts) => cosa::cmd::history::prune(&cli.global, &opts),
        Cmd::Tag(opts) => cosa::cmd::history::tag(&cli.global, &opts),
        Cmd::BuildContainer(opts) => cosa::cmd::container::build(&cli.global, &opts),
        Cmd::PushContainer(opts) => cosa::cmd::container::push(&cli.global, &opts),
        Cmd::Import(opts) => cosa::cmd::container::import(&cli.global, &opts),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
