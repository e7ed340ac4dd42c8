//! The protocol against its document and itself: every example in
//! docs/agent-protocol.md parses and re-serializes to the same JSON, every
//! message type is documented, every message survives the framing.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Cursor, ErrorKind};
use std::os::unix::fs::PermissionsExt;

use agent_protocol::framing::{FrameError, JobEnd};
use agent_protocol::*;
use serde_json::Value;

const DOC: &str = include_str!("../../docs/agent-protocol.md");

/// Exhaustive: a new variant does not compile until it is listed (and documented).
fn host_type(m: &HostMessage) -> &'static str {
    match m {
        HostMessage::Hello { .. } => "hello",
        HostMessage::Ping { .. } => "ping",
        HostMessage::Run(_) => "run",
        HostMessage::Exec(_) => "exec",
        HostMessage::Kill { .. } => "kill",
        HostMessage::Shutdown { .. } => "shutdown",
    }
}

fn guest_type(m: &GuestMessage) -> &'static str {
    match m {
        GuestMessage::Ready(_) => "ready",
        GuestMessage::Pong { .. } => "pong",
        GuestMessage::Started { .. } => "started",
        GuestMessage::Output { .. } => "output",
        GuestMessage::Exit { .. } => "exit",
        GuestMessage::Reboot { .. } => "reboot",
        GuestMessage::Error { .. } => "error",
        GuestMessage::ShuttingDown { .. } => "shutting_down",
    }
}

/// One of each message, with every optional field set somewhere.
fn host_samples() -> Vec<HostMessage> {
    vec![
        HostMessage::Hello { protocol: 1 },
        HostMessage::Ping { id: u64::MAX },
        HostMessage::Run(RunRequest {
            id: "t1".into(),
            name: "ext.demo.basic".into(),
            exec: "test.sh".into(),
            bundle: vec![0, 1, 2, 255, b'\n'].into(),
            env: [("A".into(), "b c\n".into())].into(),
            timeout_secs: Some(600),
        }),
        HostMessage::Run(RunRequest {
            id: "t2".into(),
            name: "n".into(),
            exec: "x".into(),
            bundle: Blob::default(),
            env: Default::default(),
            timeout_secs: None,
        }),
        HostMessage::Exec(ExecRequest {
            id: "c1".into(),
            argv: vec!["sh".into(), "-c".into(), "echo \"hi\"".into()],
            env: Default::default(),
            timeout_secs: Some(1),
        }),
        HostMessage::Kill { id: "t1".into() },
        HostMessage::Shutdown {
            action: ShutdownAction::Poweroff,
        },
        HostMessage::Shutdown {
            action: ShutdownAction::Reboot,
        },
    ]
}

fn guest_samples() -> Vec<GuestMessage> {
    vec![
        GuestMessage::Ready(ReadyInfo {
            protocol: 1,
            agent_version: "0.1.0".into(),
            boot_id: "b".into(),
            kernel_release: "6.1".into(),
            cmdline: "console=ttyS0 ostree=/x".into(),
            uptime_secs: 1.5,
            reboot_mark: Some("m 1".into()),
            resuming: Some(ResumedJob {
                id: "t1".into(),
                name: "n".into(),
            }),
            failed_units: vec![FailedUnit {
                name: "a.service".into(),
                reason: "exited with status 1".into(),
            }],
        }),
        GuestMessage::Pong { id: 0 },
        GuestMessage::Started { id: "t1".into() },
        GuestMessage::Output {
            id: "t1".into(),
            stream: Stream::Stdout,
            data: b"\xff\xfe not utf-8\n".to_vec().into(),
        },
        GuestMessage::Output {
            id: "t1".into(),
            stream: Stream::Stderr,
            data: Blob::default(),
        },
        GuestMessage::Exit {
            id: "t1".into(),
            status: ExitStatus {
                code: Some(0),
                signal: None,
                timed_out: false,
            },
        },
        GuestMessage::Exit {
            id: "t1".into(),
            status: ExitStatus {
                code: None,
                signal: Some(9),
                timed_out: true,
            },
        },
        GuestMessage::Reboot {
            id: "t1".into(),
            name: "n".into(),
            mark: "step1".into(),
        },
        GuestMessage::Error {
            id: None,
            message: "bad".into(),
        },
        GuestMessage::Error {
            id: Some("t1".into()),
            message: "gone".into(),
        },
        GuestMessage::ShuttingDown {
            action: ShutdownAction::Poweroff,
        },
    ]
}

/// (direction, line) of every example block in the doc.
fn doc_examples() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let mut dir = None;
    for line in DOC.lines() {
        match (dir, line.trim()) {
            (None, "```json host") => dir = Some("host"),
            (None, "```json guest") => dir = Some("guest"),
            (Some(_), "```") => dir = None,
            (Some(d), l) if !l.is_empty() => out.push((d, l)),
            _ => {}
        }
    }
    out
}

#[test]
fn doc_examples_parse_and_cover_every_message() {
    let mut host_seen = BTreeSet::new();
    let mut guest_seen = BTreeSet::new();
    for (dir, line) in doc_examples() {
        let original: Value = serde_json::from_str(line).unwrap();
        let again = if dir == "host" {
            let m: HostMessage =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            host_seen.insert(host_type(&m));
            serde_json::to_value(&m).unwrap()
        } else {
            let m: GuestMessage =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            guest_seen.insert(guest_type(&m));
            serde_json::to_value(&m).unwrap()
        };
        assert_eq!(original, again, "doc example does not round-trip");
    }
    let host_all: BTreeSet<_> = host_samples().iter().map(host_type).collect();
    let guest_all: BTreeSet<_> = guest_samples().iter().map(guest_type).collect();
    assert_eq!(host_seen, host_all, "host messages documented vs defined");
    assert_eq!(
        guest_seen, guest_all,
        "guest messages documented vs defined"
    );
    assert!(DOC.contains(&format!("`PROTOCOL_VERSION` is **{PROTOCOL_VERSION}**")));
    assert!(DOC.contains(GUEST_PORT_PATH));
}

#[test]
fn every_message_round_trips_through_framing() {
    let mut buf = Vec::new();
    {
        let mut w = FrameWriter::new(&mut buf);
        for m in host_samples() {
            w.send(&m).unwrap();
        }
    }
    assert_eq!(
        buf.iter().filter(|b| **b == b'\n').count(),
        host_samples().len()
    );
    let mut r = FrameReader::new(Cursor::new(buf));
    for m in host_samples() {
        assert_eq!(r.read::<HostMessage>().unwrap(), Some(m));
    }
    assert!(r.read::<HostMessage>().unwrap().is_none());

    let mut buf = Vec::new();
    {
        let mut w = FrameWriter::new(&mut buf);
        for m in guest_samples() {
            w.send(&m).unwrap();
        }
    }
    let mut r = FrameReader::new(Cursor::new(buf));
    for m in guest_samples() {
        assert_eq!(r.read::<GuestMessage>().unwrap(), Some(m));
    }
    assert!(r.read::<GuestMessage>().unwrap().is_none());
}

#[test]
fn framing_edge_cases() {
    let input = b"\n  \n{\"type\":\"ping\",\"id\":1,\"future_field\":true}\nnot json\n{\"type\":\"nope\"}\n{\"type\":\"ping\",\"id\":2}\n{\"type\":\"pi";
    let mut r = FrameReader::new(&input[..]);
    // Unknown fields are ignored (compatible additions).
    assert_eq!(
        r.read::<HostMessage>().unwrap(),
        Some(HostMessage::Ping { id: 1 })
    );
    assert!(matches!(
        r.read::<HostMessage>(),
        Err(FrameError::Decode { ref line, .. }) if line == "not json"
    ));
    assert!(matches!(
        r.read::<HostMessage>(),
        Err(FrameError::Decode { ref error, .. }) if error.contains("unknown variant `nope`")
    ));
    // The stream is still usable after a bad line.
    assert_eq!(
        r.read::<HostMessage>().unwrap(),
        Some(HostMessage::Ping { id: 2 })
    );
    match r.read::<HostMessage>() {
        Err(FrameError::Io(e)) => assert_eq!(e.kind(), ErrorKind::UnexpectedEof),
        other => panic!("{other:?}"),
    }
}

#[test]
fn connection_collects_one_job() {
    let mut guest = Vec::new();
    {
        let mut w = FrameWriter::new(&mut guest);
        let out = |id: &str, s, d: &[u8]| GuestMessage::Output {
            id: id.into(),
            stream: s,
            data: d.into(),
        };
        for m in [
            guest_samples()[0].clone(),
            GuestMessage::Started { id: "t1".into() },
            out("t1", Stream::Stdout, b"a"),
            out("other", Stream::Stdout, b"zzz"),
            out("t1", Stream::Stderr, b"e"),
            out("t1", Stream::Stdout, b"b\n"),
            GuestMessage::Exit {
                id: "t1".into(),
                status: ExitStatus {
                    code: Some(1),
                    ..Default::default()
                },
            },
            GuestMessage::Reboot {
                id: "t2".into(),
                name: "n".into(),
                mark: "m".into(),
            },
        ] {
            w.send(&m).unwrap();
        }
    }
    let mut sent = Vec::new();
    let mut conn = Connection::new(Cursor::new(guest), &mut sent);
    let ready = conn.hello().unwrap();
    assert_eq!(ready.reboot_mark.as_deref(), Some("m 1"));
    let mut others = Vec::new();
    let r = conn.wait_job("t1", |m| others.push(m)).unwrap();
    assert_eq!(r.stdout, b"ab\n");
    assert_eq!(r.stderr, b"e");
    assert_eq!(
        r.end,
        JobEnd::Exit(ExitStatus {
            code: Some(1),
            ..Default::default()
        })
    );
    assert_eq!(others.len(), 1);
    let r = conn.wait_job("t2", |_| {}).unwrap();
    assert_eq!(r.end, JobEnd::Reboot { mark: "m".into() });
    assert!(matches!(conn.recv(), Err(FrameError::Io(e)) if e.kind() == ErrorKind::UnexpectedEof));
    drop(conn);
    assert_eq!(sent, b"{\"type\":\"hello\",\"protocol\":1}\n");
}

#[test]
fn hello_refuses_another_protocol_version() {
    let mut guest = Vec::new();
    let mut ready = guest_samples()[0].clone();
    if let GuestMessage::Ready(r) = &mut ready {
        r.protocol = PROTOCOL_VERSION + 1;
    }
    FrameWriter::new(&mut guest).send(&ready).unwrap();
    let mut conn = Connection::new(Cursor::new(guest), Vec::new());
    assert!(
        matches!(conn.hello(), Err(FrameError::Incompatible { guest }) if guest == PROTOCOL_VERSION + 1)
    );
}

#[test]
fn bundle_round_trip() {
    let src = tempfile::tempdir().unwrap();
    let exe = src.path().join("test.sh");
    fs::write(&exe, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let data = src.path().join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("sub/file"), "x").unwrap();
    std::os::unix::fs::symlink("sub/file", data.join("link")).unwrap();
    let (name, tar) = bundle::pack(&exe, Some(&data)).unwrap();
    assert_eq!(name, "test.sh");
    let dest = tempfile::tempdir().unwrap();
    bundle::unpack(&tar, dest.path()).unwrap();
    let d = dest.path();
    assert_eq!(
        fs::read_to_string(d.join("test.sh")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        fs::metadata(d.join("test.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(fs::read_to_string(d.join("data/sub/file")).unwrap(), "x");
    assert_eq!(
        fs::read_link(d.join("data/link")).unwrap(),
        std::path::Path::new("sub/file")
    );
    // Without data/, and a name that would collide with it, refused.
    let (_, tar) = bundle::pack(&exe, None).unwrap();
    let d2 = tempfile::tempdir().unwrap();
    bundle::unpack(&tar, d2.path()).unwrap();
    assert!(!d2.path().join("data").exists());
    assert!(bundle::pack(&data, None).is_err());
}
