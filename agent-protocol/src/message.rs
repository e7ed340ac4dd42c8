//! Every message of the protocol. JSON objects tagged by `"type"`.
//!
//! Receivers ignore fields they do not know (additive changes keep the
//! protocol version); an unknown `"type"` is answered with an `error`.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Host → guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// Opens a session; answered with [`GuestMessage::Ready`]. May be repeated.
    Hello { protocol: u32 },
    /// Liveness probe; answered with [`GuestMessage::Pong`] carrying the same id.
    Ping { id: u64 },
    /// Run a kola test from a bundle (see [`crate::bundle`]).
    Run(RunRequest),
    /// Run an ad-hoc command (checks, `cosa run`).
    Exec(ExecRequest),
    /// Kill a running job's process group; it ends with `exit` (signal 9).
    Kill { id: String },
    /// Power the guest off or reboot it (not a test reboot: nothing resumes).
    Shutdown { action: ShutdownAction },
}

/// Guest → host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestMessage {
    /// The system is up and the agent is listening.
    Ready(ReadyInfo),
    Pong {
        id: u64,
    },
    /// A job's process was started (bundle unpacked, executable spawned).
    Started {
        id: String,
    },
    /// A chunk of a job's output, in the order produced on that stream.
    Output {
        id: String,
        stream: Stream,
        data: Blob,
    },
    /// The job's process ended; the last message of that job.
    Exit {
        id: String,
        #[serde(flatten)]
        status: ExitStatus,
    },
    /// The test called `/tmp/autopkgtest-reboot MARK`; the guest reboots now
    /// and resumes the job after boot (the next `ready` names it).
    Reboot {
        id: String,
        name: String,
        mark: String,
    },
    /// Something went wrong. With an `id`, that job is over (it never started
    /// or could not be resumed); without, it concerns the session.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        message: String,
    },
    /// Acknowledges [`HostMessage::Shutdown`]; the guest goes down next.
    ShuttingDown {
        action: ShutdownAction,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    /// Job id chosen by the host; every message of this job carries it.
    pub id: String,
    /// Test name (`ext.config.foo`), exported as `KOLA_TEST`.
    pub name: String,
    /// Path of the executable inside the bundle, e.g. `test.sh`.
    pub exec: String,
    /// Tar archive with the executable and its optional `data/` directory.
    pub bundle: Blob,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill the test's process group after this long (from each (re)start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub id: String,
    /// Program and arguments; `argv[0]` is looked up in `PATH`.
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyInfo {
    pub protocol: u32,
    pub agent_version: String,
    /// `/proc/sys/kernel/random/boot_id`: changes on every boot.
    pub boot_id: String,
    pub kernel_release: String,
    pub cmdline: String,
    pub uptime_secs: f64,
    /// Set when a test asked for a reboot: the mark it passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_mark: Option<String>,
    /// Job being resumed after that reboot; its output follows this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resuming: Option<ResumedJob>,
    /// Units started from `/etc/demo-agent/units.d` that failed.
    #[serde(default)]
    pub failed_units: Vec<FailedUnit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumedJob {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedUnit {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownAction {
    Poweroff,
    Reboot,
}

/// How a job ended: exactly one of `code` and `signal` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExitStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The agent killed it because `timeout_secs` passed.
    #[serde(default)]
    pub timed_out: bool,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit status {c}")?,
            (None, Some(s)) => write!(f, "killed by signal {s}")?,
            (None, None) => write!(f, "unknown status")?,
        }
        if self.timed_out {
            write!(f, " (timed out)")?;
        }
        Ok(())
    }
}

/// Bytes carried as a base64 string (standard alphabet, padded).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Blob(pub Vec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Self {
        Blob(v)
    }
}

impl From<&[u8]> for Blob {
    fn from(v: &[u8]) -> Self {
        Blob(v.to_vec())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map(Blob)
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}
