//! Notifications to systemd (`Type=notify`): READY=1 after the first scan,
//! STATUS= lines, WATCHDOG=1 pings and STOPPING=1.
//!
//! Only when systemd asked for them by setting `NOTIFY_SOCKET`; otherwise
//! nothing is attempted, not even a socket. The worker never inherits the
//! variables (see `supervise::run_worker`): only the main process may talk
//! to systemd (`NotifyAccess=main`).

use sd_notify::NotifyState;
use std::time::{Duration, Instant};

pub struct Notifier {
    enabled: bool,
    /// Half of `WatchdogSec=`, as sd_watchdog_enabled(3) recommends.
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,
    last_status: String,
    /// READY=1 was sent; STATUS= lines before it would come out of order.
    ready: bool,
    /// STOPPING=1 was sent: it is the last word, watchdog pings aside.
    stopping: bool,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let mut usec = 0;
        let ping_every = (enabled && sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
            .then(|| Duration::from_micros(usec / 2));
        Notifier {
            enabled,
            ping_every,
            next_ping: ping_every.map(|d| Instant::now() + d),
            last_status: String::new(),
            ready: false,
            stopping: false,
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = send(states) {
            // systemd restarts a service whose watchdog pings stop; a lost
            // status line is only logged.
            log::warn!("cannot notify systemd through NOTIFY_SOCKET: {e}");
        }
    }

    /// Startup is over: the first scan is done and the queue is known.
    pub fn ready(&mut self, status: &str) {
        let status = one_line(status);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        self.last_status = status;
        self.ready = true;
    }

    /// What the daemon is doing, for `systemctl status`; sent when it changes.
    pub fn status(&mut self, status: &str) {
        let status = one_line(status);
        if self.ready && !self.stopping && status != self.last_status {
            self.send(&[NotifyState::Status(&status)]);
            self.last_status = status;
        }
    }

    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        self.stopping = true;
    }

    /// When the next watchdog ping is due; None without a watchdog.
    pub fn next_ping(&self) -> Option<Instant> {
        self.next_ping
    }

    pub fn ping_if_due(&mut self, now: Instant) {
        if let (Some(every), Some(due)) = (self.ping_every, self.next_ping) {
            if now >= due {
                self.send(&[NotifyState::Watchdog]);
                self.next_ping = Some(now + every);
            }
        }
    }
}

/// A file name may hold a newline, which would end the STATUS= assignment
/// and start a forged one.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// sd-notify connects to path sockets only; an abstract one (`@name`, used
/// in some containers) is connected here.
fn send(states: &[NotifyState]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let socket = std::env::var_os("NOTIFY_SOCKET").unwrap_or_default();
    let Some(name) = socket.as_encoded_bytes().strip_prefix(b"@") else {
        return sd_notify::notify(false, states);
    };
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    let sock = UnixDatagram::unbound()?;
    sock.connect_addr(&SocketAddr::from_abstract_name(name)?)?;
    sock.send(message.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_one_line() {
        assert_eq!(
            one_line("benchmarking a\nREADY=1.pt"),
            "benchmarking a?READY=1.pt"
        );
    }
}
