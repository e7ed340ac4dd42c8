//! The virtio-serial port: opened (and re-opened) by a reader thread, written
//! by a writer thread, so the main loop never blocks on the host.
//!
//! A virtio-serial port reads end-of-file while no host is connected and
//! writes block until one is: on EOF we read again after a short pause.
//! `--port` may also name a Unix socket (tests), which we connect to and
//! reconnect to when the peer goes away.

use fs_err::{self as fs, OpenOptions};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

use agent_protocol::framing::FrameError;
use agent_protocol::{FrameReader, GuestMessage, HostMessage};

use super::Event;

type Reader = Box<dyn Read + Send>;
type Writer = Box<dyn Write + Send>;

enum WriterCmd {
    Port(Writer),
    Line(Vec<u8>),
    Flush(Sender<()>),
}

/// Queue of outgoing messages; cheap to clone into threads.
#[derive(Clone)]
pub struct Outbox {
    tx: Sender<WriterCmd>,
}

impl Outbox {
    pub fn send(&self, msg: &GuestMessage) {
        match serde_json::to_vec(msg) {
            Ok(mut line) => {
                line.push(b'\n');
                let _ = self.tx.send(WriterCmd::Line(line));
            }
            Err(e) => eprintln!("demo-agent: cannot encode message: {e}"),
        }
    }

    /// Waits (at most `max`) until everything queued so far was written.
    pub fn flush(&self, max: Duration) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(WriterCmd::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(max);
        }
    }
}

/// Opens the port; the flag says whether it is a socket (tests) rather than
/// the virtio character device.
fn open(path: &Path) -> std::io::Result<(Reader, Writer, bool)> {
    let path = &resolve(path);
    if fs::metadata(path)?.file_type().is_socket() {
        let s = UnixStream::connect(path)?;
        let w = s.try_clone()?;
        Ok((Box::new(s), Box::new(w), true))
    } else {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        let w = f.try_clone()?;
        Ok((Box::new(f), Box::new(w), false))
    }
}

/// `/dev/virtio-ports/<name>` is a udev symlink; without udev (busybox
/// init, mdev) find the `vportNpM` device carrying that name in sysfs.
fn resolve(path: &Path) -> PathBuf {
    let by_name = Path::new("/dev/virtio-ports");
    if path.exists() || path.parent() != Some(by_name) {
        return path.to_path_buf();
    }
    let Some(name) = path.file_name() else {
        return path.to_path_buf();
    };
    fs::read_dir("/sys/class/virtio-ports")
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| {
            fs::read(e.path().join("name"))
                .is_ok_and(|n| n.trim_ascii_end() == name.as_encoded_bytes())
        })
        .map_or_else(
            || path.to_path_buf(),
            |e| Path::new("/dev").join(e.file_name()),
        )
}

/// Starts the reader and writer threads; host messages arrive on `events`.
pub fn start(path: PathBuf, events: Sender<Event>) -> Outbox {
    let (tx, rx) = mpsc::channel();
    let outbox = Outbox { tx: tx.clone() };
    thread::spawn(move || writer_loop(rx));
    thread::spawn(move || reader_loop(&path, &tx, &events));
    outbox
}

fn reader_loop(path: &Path, writer: &Sender<WriterCmd>, events: &Sender<Event>) {
    let mut said_waiting = false;
    loop {
        let (r, w, is_socket) = match open(path) {
            Ok(p) => p,
            Err(e) => {
                if !said_waiting {
                    eprintln!("demo-agent: waiting for {}: {e}", path.display());
                    said_waiting = true;
                }
                thread::sleep(Duration::from_millis(250));
                continue;
            }
        };
        said_waiting = false;
        if writer.send(WriterCmd::Port(w)).is_err() {
            return;
        }
        let mut frames = FrameReader::new(r);
        loop {
            let ev = match frames.read::<HostMessage>() {
                Ok(Some(m)) => Event::Host(m),
                Err(FrameError::Decode { line, error }) => Event::BadFrame(format!(
                    "invalid message ({error}): {}",
                    line.chars().take(200).collect::<String>()
                )),
                // A virtio port reads EOF while no host is connected. Keep the
                // same fd: the port can only be open once, and the writer
                // thread holds it too.
                Ok(None) | Err(_) if !is_socket => {
                    thread::sleep(Duration::from_millis(200));
                    continue;
                }
                // A socket's peer is gone for good: connect again.
                Ok(None) | Err(_) => break,
            };
            if events.send(ev).is_err() {
                return;
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
}

fn writer_loop(rx: Receiver<WriterCmd>) {
    let mut port: Option<Writer> = None;
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    let mut flushes: Vec<Sender<()>> = Vec::new();
    while let Ok(cmd) = rx.recv() {
        match cmd {
            WriterCmd::Port(w) => port = Some(w),
            WriterCmd::Line(l) => pending.push_back(l),
            WriterCmd::Flush(done) => flushes.push(done),
        }
        if let Some(w) = port.as_mut() {
            while let Some(line) = pending.front() {
                if w.write_all(line).and_then(|()| w.flush()).is_err() {
                    // Keep the line for the next port the reader opens.
                    port = None;
                    break;
                }
                pending.pop_front();
            }
        }
        if pending.is_empty() {
            for f in flushes.drain(..) {
                let _ = f.send(());
            }
        }
    }
}
