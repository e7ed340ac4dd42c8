//! The host side of the guest agent channel (docs/agent-protocol.md).
//!
//! The message types, the framing and the test bundle format are defined once,
//! in the `agent-protocol` crate that `demo-agent` is built from too; this
//! module re-exports them for the harness and adds what only the host needs:
//! the QEMU arguments that create the channel.

use std::ffi::OsString;
use std::path::Path;

pub use agent_protocol::bundle;
pub use agent_protocol::framing::{FrameError, JobEnd, JobResult};
pub use agent_protocol::{
    Blob, Connection, ExecRequest, ExitStatus, FailedUnit, FrameReader, FrameWriter, GuestMessage,
    HostMessage, ReadyInfo, ResumedJob, RunRequest, ShutdownAction, Stream, GUEST_PORT_PATH,
    MAX_LINE_BYTES, PORT_NAME, PROTOCOL_VERSION,
};

/// QEMU arguments for the agent's virtio-serial port, backed by a Unix socket
/// at `socket` that QEMU listens on and the harness connects to at any time.
pub fn qemu_args(socket: &Path) -> Vec<OsString> {
    let mut chardev = OsString::from("socket,id=cosa-agent,server=on,wait=off,path=");
    chardev.push(socket);
    [
        OsString::from("-device"),
        OsString::from("virtio-serial"),
        OsString::from("-chardev"),
        chardev,
        OsString::from("-device"),
        OsString::from(format!(
            "virtserialport,chardev=cosa-agent,name={PORT_NAME}"
        )),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_args_name_the_port() {
        let a = qemu_args(Path::new("/run/vm1/agent.sock"));
        let a: Vec<_> = a.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            a,
            [
                "-device",
                "virtio-serial",
                "-chardev",
                "socket,id=cosa-agent,server=on,wait=off,path=/run/vm1/agent.sock",
                "-device",
                "virtserialport,chardev=cosa-agent,name=org.cosa.agent.0",
            ]
        );
    }

    /// The host's view of the types is the agent's: a host-built message
    /// decodes as the guest decodes it, and back.
    #[test]
    fn host_and_guest_agree() {
        let run = HostMessage::Run(RunRequest {
            id: "t1".into(),
            name: "ext.demo.basic".into(),
            exec: "test.sh".into(),
            bundle: vec![1, 2, 3].into(),
            env: Default::default(),
            timeout_secs: Some(600),
        });
        let mut line = Vec::new();
        FrameWriter::new(&mut line).send(&run).unwrap();
        let back: Option<agent_protocol::HostMessage> = FrameReader::new(&line[..]).read().unwrap();
        assert_eq!(back, Some(run));
        let exit = GuestMessage::Exit {
            id: "t1".into(),
            status: ExitStatus {
                code: Some(0),
                ..Default::default()
            },
        };
        let mut sent = Vec::new();
        FrameWriter::new(&mut sent).send(&exit).unwrap();
        let mut conn = Connection::new(&sent[..], Vec::new());
        let r = conn.wait_job("t1", |_| {}).unwrap();
        assert_eq!(
            r.end,
            JobEnd::Exit(ExitStatus {
                code: Some(0),
                ..Default::default()
            })
        );
    }
}
