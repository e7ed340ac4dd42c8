//! The wire protocol between kola (host) and `demo-agent serve` (guest).
//!
//! This crate is the single definition of the protocol described in
//! `docs/agent-protocol.md`: the agent and cosa both depend on it, so the two
//! sides cannot drift apart.
//!
//! - [`message`]: every message, host → guest ([`HostMessage`]) and
//!   guest → host ([`GuestMessage`]);
//! - [`framing`]: newline-delimited JSON over any `Read`/`Write`;
//! - [`bundle`]: the tar archive a `run` carries (test executable + `data/`).

pub mod bundle;
pub mod framing;
pub mod message;

pub use framing::{Connection, FrameReader, FrameWriter};
pub use message::*;

/// Version of the protocol spoken by this crate; see "Versioning" in the doc.
pub const PROTOCOL_VERSION: u32 = 1;

/// Name of the virtio-serial port the agent listens on.
pub const PORT_NAME: &str = "org.cosa.agent.0";

/// Where the guest kernel exposes [`PORT_NAME`].
pub const GUEST_PORT_PATH: &str = "/dev/virtio-ports/org.cosa.agent.0";

/// Longest accepted line (one message), bundle included.
pub const MAX_LINE_BYTES: usize = 256 * 1024 * 1024;
