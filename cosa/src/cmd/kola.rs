//! `cosa kola run|list` and `cosa run`: options into the kola stage's, results printed.

use std::time::Duration;

use anyhow::Result;

use crate::arch::Arch;
use crate::cli::{
    GlobalOpts, KolaAction, KolaListOpts, KolaOpts, KolaRunOpts, KolaSelectOpts, KolaUpgradeOpts,
    QemuOpts, RunOpts,
};
use crate::kola::qemu::{Accel, Console, DirectBoot, Drive, QemuSpec, UserNet};
use crate::kola::{self, RunVmOutcome};

pub fn run(g: &GlobalOpts, o: &KolaOpts) -> Result<()> {
    match &o.action {
        KolaAction::Run(r) => kola_run(g, r),
        KolaAction::List(l) => kola_list(g, l),
        KolaAction::RunUpgrade(u) => kola_upgrade(g, u),
    }
}

fn select_options(s: &KolaSelectOpts) -> kola::SelectOptions {
    kola::SelectOptions {
        patterns: s.patterns.clone(),
        tags: s.tags.clone(),
        exttests: s.exttests.clone(),
        denylist: s.denylist.clone(),
        no_denylist: s.no_denylist,
        shard: s.shard.clone(),
        platform: s.platform.clone(),
        build: s.build.clone(),
    }
}

fn kola_list(g: &GlobalOpts, o: &KolaListOpts) -> Result<()> {
    let selected = kola::list(&g.workdir, &select_options(&o.select))?;
    if o.json {
        let v: Vec<serde_json::Value> = selected
            .run
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "tags": t.meta.tags,
                    "exclusive": t.meta.exclusive,
                    "timeout_secs": t.meta.timeout.as_secs(),
                    "description": t.meta.description,
                    "warn_only": selected.warn_only.contains(&t.name),
                })
            })
            .chain(
                selected
                    .skipped
                    .iter()
                    .map(|(n, why)| serde_json::json!({"name": n, "skipped": why})),
            )
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<40} {:<10} {:<24} DESCRIPTION",
        "NAME", "EXCLUSIVE", "TAGS"
    );
    for t in &selected.run {
        println!(
            "{:<40} {:<10} {:<24} {}",
            t.name,
            t.meta.exclusive,
            t.meta.tags.join(","),
            t.meta.description.as_deref().unwrap_or("")
        );
    }
    for (n, why) in &selected.skipped {
        println!("{n:<40} skipped: {why}");
    }
    Ok(())
}

/// The value parser admits auto, kvm and tcg only.
fn accel(s: &str) -> Option<Accel> {
    match s {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

fn kola_upgrade(g: &GlobalOpts, o: &KolaUpgradeOpts) -> Result<()> {
    let opts = kola::UpgradeOptions {
        from: o.from.clone(),
        to: o.to.clone(),
        firmware: o.vm.qemu_firmware,
        accel: accel(&o.vm.qemu_accel),
        memory_mib: o.vm.qemu_memory,
        boot_timeout: Duration::from_secs(o.vm.boot_timeout),
        output_dir: o.output_dir.clone(),
        gpg_key: o.gpg_key.clone(),
    };
    let outcome = kola::run_upgrade(&g.workdir, &opts)?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&outcome.to_json())?);
    } else {
        println!(
            "{}",
            kola::report::summary_table(std::slice::from_ref(&outcome.result))
        );
        println!("{}", outcome.result.output);
        println!("reports: {}", outcome.output_dir.join("reports").display());
    }
    if outcome.exit_code != 0 {
        std::process::exit(outcome.exit_code);
    }
    Ok(())
}

fn kola_run(g: &GlobalOpts, o: &KolaRunOpts) -> Result<()> {
    let opts = kola::RunOptions {
        select: select_options(&o.select),
        parallel: o.parallel.clone(),
        firmware: o.vm.qemu_firmware,
        output_dir: o.output_dir.clone(),
        rerun: o.rerun,
        quiet: o.json,
        qemu_image: o.qemu_image.clone(),
        accel: accel(&o.vm.qemu_accel),
        memory_mib: o.vm.qemu_memory,
        boot_timeout: Duration::from_secs(o.vm.boot_timeout),
        transport: o.transport,
    };
    let outcome = kola::run(&g.workdir, &opts)?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&outcome.to_json())?);
    } else {
        println!("{}", kola::report::summary_table(&outcome.results));
        println!("reports: {}", outcome.reports_dir().display());
    }
    if outcome.interrupted {
        eprintln!("kola: interrupted; the report holds the tests that finished");
        std::process::exit(130);
    }
    if outcome.exit_code != 0 {
        std::process::exit(outcome.exit_code);
    }
    Ok(())
}

/// `cosa run`: boot the build's qemu image; print the agent's ready report
/// and power off, or (`-c`) hand the serial console to this terminal.
pub fn run_vm(g: &GlobalOpts, o: &RunOpts) -> Result<()> {
    let opts = kola::RunVmOptions {
        build: o.build.clone(),
        firmware: o.qemu_firmware,
        ignition: o.ignition.clone(),
        memory_mib: o.memory,
        console: o.console,
        transport: o.transport,
        autologin: !o.no_autologin,
        ssh: o.ssh,
        kargs: o
            .kargs
            .as_deref()
            .map(|k| k.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        add_disks: o.add_disk.clone(),
        bind_ro: o
            .bind_ro
            .iter()
            .map(|b| kola::bindro::BindRo::parse(b))
            .collect::<Result<_>>()?,
    };
    match kola::run_vm(&g.workdir, &opts)? {
        RunVmOutcome::Ready(ready) => println!("{}", serde_json::to_string_pretty(&ready)?),
        RunVmOutcome::ConsoleClosed(how) => eprintln!("cosa run: QEMU {how}"),
        RunVmOutcome::SshClosed(code) => {
            eprintln!("cosa run: SSH session ended ({code}); guest powered off")
        }
    }
    Ok(())
}

/// `cosa qemu` (hidden): this process becomes QEMU, so a script's `$!` is QEMU's pid.
pub fn qemu(o: &QemuOpts) -> Result<()> {
    let disks = o.disk.iter().enumerate().map(|(i, p)| {
        let format = if p.extension().is_some_and(|e| e == "qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        let d = Drive::disk(p, format);
        if i == 0 {
            d.bootindex(1)
        } else {
            d
        }
    });
    let spec = QemuSpec {
        memory_mib: o.memory,
        drives: disks.chain(o.cdrom.iter().map(Drive::cdrom)).collect(),
        ignition: o.ignition.clone(),
        direct_boot: o.kernel.as_ref().map(|k| DirectBoot {
            kernel: k.clone(),
            initrd: o.initrd.clone(),
            cmdline: o.append.clone().unwrap_or_default(),
        }),
        exit_on_reboot: true,
        network: o.network.then(|| UserNet {
            forwards: o.forward.clone(),
            ssh: false,
        }),
        qmp_socket: o.qmp.clone(),
        agent_socket: o.agent_socket.clone(),
        ..QemuSpec::new(Arch::host()?, o.name.clone(), Accel::Tcg, Console::Stdio)
    };
    Err(spec.exec())
}
