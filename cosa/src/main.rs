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
        Cmd::Sign(opts) => cosa::cmd::release::sign(&cli.global, &opts),
        Cmd::GenerateReleaseMeta(opts) => cosa::cmd::release::release_meta(&cli.global, &opts),
        Cmd::StreamMetadata(opts) => cosa::cmd::release::stream_metadata(&cli.global, &opts),
        Cmd::BuildContainer(opts) => cosa::cmd::container::build(&cli.global, &opts),
        Cmd::PushContainer(opts) => cosa::cmd::container::push(&cli.global, &opts),
        Cmd::Import(opts) => cosa::cmd::container::import(&cli.global, &opts),
        Cmd::PlatformImage(c) => {
            let (platform, opts) = c.platform();
            cosa::cmd::images::buildextend(&cli.global, platform, opts)
        }
        Cmd::Osbuild(opts) => cosa::cmd::images::osbuild(&cli.global, &opts),
        Cmd::Compress(opts) => cosa::cmd::images::compress(&cli.global, &opts),
        Cmd::Decompress(opts) => cosa::cmd::images::decompress(&cli.global, &opts),
        Cmd::BuildextendLive(opts) => cosa::cmd::live::buildextend(&cli.global, &opts),
        Cmd::Iso(opts) => cosa::cmd::live::iso(&cli.global, &opts),
        Cmd::Pxe(opts) => cosa::cmd::live::pxe(&cli.global, &opts),
        Cmd::Kola(opts) => cosa::cmd::kola::run(&cli.global, &opts),
        Cmd::Run(opts) => cosa::cmd::kola::run_vm(&cli.global, &opts),
        Cmd::Qemu(opts) => cosa::cmd::kola::qemu(&opts),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
