//! Messages that must be seen on the guest's console (and in the kernel log),
//! not only on our stderr: first-boot success or failure is what kola greps.

use fs_err::OpenOptions;
use std::io::Write;

/// Where status lines go.
#[derive(Debug, Clone, Copy)]
pub enum Console {
    /// The real system: /dev/console and /dev/kmsg (stderr if neither opens).
    System,
    /// Tests and `--root` runs: stderr only.
    Stderr,
}

impl Console {
    /// Prints one line, prefixed `demo-agent: `.
    pub fn say(self, line: &str) {
        let text = format!("demo-agent: {line}\n");
        match self {
            Console::Stderr => eprint!("{text}"),
            Console::System => {
                let mut shown = write_to("/dev/console", text.as_bytes());
                // <5> = notice: kept in the kernel log without doubling on a quiet console.
                shown |= write_to("/dev/kmsg", format!("<5>{text}").as_bytes());
                if !shown {
                    eprint!("{text}");
                }
            }
        }
    }
}

fn write_to(path: &str, bytes: &[u8]) -> bool {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .is_ok()
}
