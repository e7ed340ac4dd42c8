//! A QMP session with one VM, over the `qapi` crate.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use qapi::futures::{QapiService, QmpStreamTokio};
use tokio::io::WriteHalf;
use tokio::net::UnixStream;

type QmpWriter = QmpStreamTokio<WriteHalf<UnixStream>>;

/// A QMP session with one VM.
pub struct Qmp {
    service: QapiService<QmpWriter>,
    events: tokio::task::JoinHandle<()>,
}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.events.abort();
    }
}

impl Qmp {
    /// Connects once QEMU has made the socket (it does so before the guest starts).
    pub async fn connect(socket: &Path, within: Duration) -> Result<Qmp> {
        let deadline = tokio::time::Instant::now() + within;
        let stream = loop {
            match QmpStreamTokio::open_uds(socket).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e)
                        .with_context(|| format!("connecting to QMP {}", socket.display()))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let stream = stream
            .negotiate()
            .await
            .with_context(|| format!("QMP capabilities negotiation on {}", socket.display()))?;
        let (service, events) = stream.spawn_tokio();
        Ok(Qmp { service, events })
    }

    /// Stops reading QMP events: call before killing QEMU, whose reset socket
    /// would otherwise be logged as an error.
    pub fn close(&self) {
        self.events.abort();
    }

    /// ACPI power button: a clean shutdown if the guest listens.
    pub async fn system_powerdown(&self) -> Result<()> {
        self.service
            .execute(qapi::qmp::system_powerdown {})
            .await
            .map(drop)
            .map_err(|e| anyhow!("QMP system_powerdown: {e}"))
    }

    /// Ends QEMU at once.
    pub async fn quit(&self) -> Result<()> {
        self.service
            .execute(qapi::qmp::quit {})
            .await
            .map(drop)
            .map_err(|e| anyhow!("QMP quit: {e}"))
    }

    /// Saves the VGA screen as a PPM image.
    pub async fn screendump(&self, path: &Path) -> Result<()> {
        self.service
            .execute(qapi::qmp::screendump {
                filename: path.to_string_lossy().into_owned(),
                device: None,
                head: None,
                format: None,
            })
            .await
            .map(drop)
            .map_err(|e| anyhow!("QMP screendump {}: {e}", path.display()))
    }

    /// Changes a device's `bootindex` (for scenarios that boot another device
    /// first, e.g. an installer, then the disk): effective at the next reset.
    pub async fn set_bootindex(&self, device_id: &str, index: i64) -> Result<()> {
        self.service
            .execute(qapi::qmp::qom_set {
                path: format!("/machine/peripheral/{device_id}"),
                property: "bootindex".into(),
                value: serde_json::json!(index),
            })
            .await
            .map(drop)
            .map_err(|e| anyhow!("QMP qom-set {device_id}.bootindex={index}: {e}"))
    }

    /// A human monitor command's output (`info usernet`: the ports QEMU bound
    /// for `hostfwd` with port 0).
    pub async fn human(&self, command: &str) -> Result<String> {
        self.service
            .execute(qapi::qmp::human_monitor_command {
                command_line: command.to_string(),
                cpu_index: None,
            })
            .await
            .map_err(|e| anyhow!("QMP human-monitor-command {command:?}: {e}"))
    }

    /// Resets the machine (used after a boot-order switch).
    pub async fn system_reset(&self) -> Result<()> {
        self.service
            .execute(qapi::qmp::system_reset {})
            .await
            .map(drop)
            .map_err(|e| anyhow!("QMP system_reset: {e}"))
    }
}
