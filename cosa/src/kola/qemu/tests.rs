use super::*;

fn spec() -> QemuSpec {
    QemuSpec {
        uefi_vars: Some("/vm/OVMF_VARS.fd".into()),
        firmware: Firmware::Uefi,
        drives: vec![
            Drive::disk("/vm/disk,0.qcow2", "qcow2")
                .bootindex(1)
                .scratch(),
            Drive::disk("/vm/disk1.qcow2", "qcow2")
                .serial("disk1")
                .scratch(),
        ],
        ignition: Some("/vm/config.ign".into()),
        qmp_socket: Some("/vm/qmp.sock".into()),
        agent_socket: "/vm/agent.sock".into(),
        ..QemuSpec::new(
            Arch::X86_64,
            "t",
            Accel::Tcg,
            Console::File("/vm/console.txt".into()),
        )
    }
}

fn args(s: &QemuSpec) -> Vec<String> {
    s.args()
        .unwrap()
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn args_have_firmware_disks_config_channel() {
    let j = args(&spec()).join(" ");
    let fw = uefi_firmware(Arch::X86_64).unwrap();
    assert!(j.contains("-machine q35 -accel tcg"), "{j}");
    assert!(j.contains(&format!("unit=0,readonly=on,file={}", fw.code)));
    assert!(j.contains("unit=1,file=/vm/OVMF_VARS.fd"));
    assert!(
        j.contains("-drive if=none,id=drive0,format=qcow2,cache=unsafe,discard=unmap,file=/vm/disk,,0.qcow2 -device virtio-blk-pci,drive=drive0,id=disk0,bootindex=1"),
        "{j}"
    );
    assert!(j.contains("id=disk1,serial=disk1"));
    assert!(j.contains("-fw_cfg name=opt/com.coreos/config,file=/vm/config.ign"));
    assert!(j.contains("name=org.cosa.agent.0"));
    assert!(j.contains("-qmp unix:/vm/qmp.sock,server=on,wait=off"));
    assert!(!j.contains("-no-reboot"));
}

#[test]
fn media_and_sectors() {
    let s = QemuSpec {
        drives: vec![
            Drive::disk("/t.raw", "raw").bootindex(1).sector_4k(),
            Drive::cdrom("/live.iso").bootindex(2),
        ],
        ..spec()
    };
    let j = args(&s).join(" ");
    assert!(
        j.contains("if=none,id=drive0,format=raw,file=/t.raw -device virtio-blk-pci,drive=drive0,id=disk0,bootindex=1,logical_block_size=4096,physical_block_size=4096"),
        "{j}"
    );
    assert!(
        j.contains("if=none,id=drive1,media=cdrom,readonly=on,file=/live.iso -device ide-cd,drive=drive1,id=disk1,bootindex=2"),
        "{j}"
    );
}

#[test]
fn uefi_without_vars_is_an_error() {
    let s = QemuSpec {
        uefi_vars: None,
        ..spec()
    };
    assert!(s.args().is_err());
}

#[test]
fn aarch64_is_refused_clearly() {
    let s = QemuSpec {
        arch: Arch::Aarch64,
        ..spec()
    };
    let e = format!("{:#}", s.args().unwrap_err());
    assert!(
        e.contains("aarch64") && e.contains("not supported yet"),
        "{e}"
    );
    assert_eq!(binary(Arch::Aarch64), "qemu-system-aarch64");
}

#[test]
fn direct_boot_ends_on_reboot() {
    let mut s = spec();
    s.direct_boot = Some(DirectBoot {
        kernel: "/k".into(),
        initrd: Some("/i".into()),
        cmdline: "root=LABEL=root quiet".into(),
    });
    s.exit_on_reboot = true;
    let a = args(&s);
    let i = a.iter().position(|x| x == "-append").unwrap();
    assert_eq!(a[i + 1], "root=LABEL=root quiet");
    assert!(a.contains(&"-no-reboot".to_string()));
}

#[test]
fn user_network_is_restricted_with_only_the_forwards_opened() {
    let j = args(&spec()).join(" ");
    assert!(
        j.contains("-nic user,restrict=on,model=virtio-net-pci "),
        "{j}"
    );
    let mut s = spec();
    s.network = Some(UserNet {
        forwards: Vec::new(),
        ssh: true,
    });
    let j = args(&s).join(" ");
    assert!(
        j.contains("-nic user,restrict=on,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:0-:22 "),
        "{j}"
    );
    let mut s = spec();
    s.network = Some(UserNet {
        forwards: vec![8080, 9000],
        ssh: false,
    });
    let j = args(&s).join(" ");
    assert!(
        j.contains("-nic user,restrict=on,model=virtio-net-pci,guestfwd=tcp:10.0.2.100:8080-cmd:socat STDIO TCP:127.0.0.1:8080,guestfwd=tcp:10.0.2.100:9000-cmd:socat STDIO TCP:127.0.0.1:9000 "),
        "{j}"
    );
    s.network = None;
    assert!(args(&s).join(" ").contains("-nic none"));
}
