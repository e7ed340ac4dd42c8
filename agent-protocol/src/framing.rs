//! Newline-delimited JSON framing over any byte stream, plus a small host-side
//! [`Connection`] with the request/response helpers kola needs.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::message::{
    ExecRequest, ExitStatus, GuestMessage, HostMessage, ReadyInfo, RunRequest, Stream,
};
use crate::{MAX_LINE_BYTES, PROTOCOL_VERSION};

/// Why no message could be had from the channel.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// A complete line that is not a valid message; the stream is still usable.
    Decode {
        line: String,
        error: String,
    },
    /// The guest speaks another protocol version (see the doc's "Versioning").
    Incompatible {
        guest: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "reading agent channel: {e}"),
            FrameError::Decode { line, error } => {
                let shown: String = line.chars().take(200).collect();
                write!(f, "invalid message ({error}): {shown}")
            }
            FrameError::Incompatible { guest } => write!(
                f,
                "guest agent speaks protocol {guest}, this host {PROTOCOL_VERSION}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Reads one JSON message per line; blank lines are skipped.
pub struct FrameReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    pub fn new(r: R) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(64 * 1024, r),
            buf: Vec::new(),
        }
    }

    /// The next message, or `None` at end of stream.
    pub fn read<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            self.buf.clear();
            let n = (&mut self.inner)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                return Ok(None);
            }
            if self.buf.last() != Some(&b'\n') {
                if self.buf.len() > MAX_LINE_BYTES {
                    return Err(FrameError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("message longer than {MAX_LINE_BYTES} bytes"),
                    )));
                }
                // A final line without newline: the peer closed mid-message.
                return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            let line = self.buf.trim_ascii();
            if line.is_empty() {
                continue;
            }
            return serde_json::from_slice(line)
                .map(Some)
                .map_err(|e| FrameError::Decode {
                    line: String::from_utf8_lossy(line).into_owned(),
                    error: e.to_string(),
                });
        }
    }
}

/// Writes one JSON message per line and flushes after each.
pub struct FrameWriter<W> {
    inner: W,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(w: W) -> Self {
        FrameWriter { inner: w }
    }

    pub fn send<T: Serialize>(&mut self, msg: &T) -> io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(io::Error::other)?;
        line.push(b'\n');
        self.inner.write_all(&line)?;
        self.inner.flush()
    }
}

/// How a job ended, as seen by the host.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    Exit(ExitStatus),
    Reboot { mark: String },
    Error(String),
}

/// Everything one job produced (one boot's worth for a rebooting test).
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub end: JobEnd,
}

/// The host side of a session: send [`HostMessage`]s, receive [`GuestMessage`]s.
pub struct Connection<R, W> {
    reader: FrameReader<R>,
    writer: FrameWriter<W>,
}

impl<R: Read, W: Write> Connection<R, W> {
    pub fn new(reader: R, writer: W) -> Self {
        Connection {
            reader: FrameReader::new(reader),
            writer: FrameWriter::new(writer),
        }
    }

    pub fn send(&mut self, msg: &HostMessage) -> io::Result<()> {
        self.writer.send(msg)
    }

    /// The next guest message; end of stream is an `UnexpectedEof` error.
    pub fn recv(&mut self) -> Result<GuestMessage, FrameError> {
        self.reader
            .read()?
            .ok_or_else(|| FrameError::Io(io::ErrorKind::UnexpectedEof.into()))
    }

    /// Sends `hello` and waits for `ready`, skipping anything else
    /// (a `ready` sent before we connected is taken as the answer).
    /// A guest of another protocol version is an error.
    pub fn hello(&mut self) -> Result<ReadyInfo, FrameError> {
        self.send(&HostMessage::Hello {
            protocol: PROTOCOL_VERSION,
        })?;
        loop {
            if let GuestMessage::Ready(info) = self.recv()? {
                if info.protocol != PROTOCOL_VERSION {
                    return Err(FrameError::Incompatible {
                        guest: info.protocol,
                    });
                }
                return Ok(info);
            }
        }
    }

    pub fn run(&mut self, req: RunRequest) -> io::Result<()> {
        self.send(&HostMessage::Run(req))
    }

    pub fn exec(&mut self, req: ExecRequest) -> io::Result<()> {
        self.send(&HostMessage::Exec(req))
    }

    /// Collects job `id`'s output until its `exit`, `reboot` or `error`.
    /// Messages of other jobs are handed to `other`.
    pub fn wait_job(
        &mut self,
        id: &str,
        mut other: impl FnMut(GuestMessage),
    ) -> Result<JobResult, FrameError> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        loop {
            let end = match self.recv()? {
                GuestMessage::Output {
                    id: j,
                    stream,
                    data,
                } if j == id => {
                    match stream {
                        Stream::Stdout => stdout.extend_from_slice(&data.0),
                        Stream::Stderr => stderr.extend_from_slice(&data.0),
                    }
                    continue;
                }
                GuestMessage::Started { id: j } if j == id => continue,
                GuestMessage::Exit { id: j, status } if j == id => JobEnd::Exit(status),
                GuestMessage::Reboot { id: j, mark, .. } if j == id => JobEnd::Reboot { mark },
                GuestMessage::Error {
                    id: Some(j),
                    message,
                } if j == id => JobEnd::Error(message),
                m => {
                    other(m);
                    continue;
                }
            };
            return Ok(JobResult {
                stdout,
                stderr,
                end,
            });
        }
    }
}
