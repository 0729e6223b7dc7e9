//! Running as a device's service: the signals an init system sends (SIGTERM
//! and SIGINT stop, SIGHUP reloads), and systemd's readiness and watchdog
//! notifications (`sd_notify`, a datagram to `NOTIFY_SOCKET`; nothing is
//! sent when the variable is not set, so other init systems see no
//! difference).

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a signal asks of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM or SIGINT: stop gracefully.
    Stop,
    /// SIGHUP: reload what a Reboot reloads.
    Reload,
}

/// The handlers of SIGTERM, SIGINT and SIGHUP.
///
/// Once installed, none of them ends the process any more: each waits in
/// its stream until [`Signals::next`] takes it. Install them before the
/// server starts, so that a SIGHUP sent during start-up (log rotation, an
/// init script's reload) is a reload once it is up, not the default action
/// (termination).
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers; needs a running tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.term.recv() => Request::Stop,
            _ = self.int.recv() => Request::Stop,
            _ = self.hup.recv() => Request::Reload,
        }
    }
}

/// Tells the service manager something; a failure is logged, never fatal
/// (the server serves whether or not its manager listens).
pub fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// `READY=1` with a status line.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` with the monotonic time, as systemd's `Type=notify-reload` expects.
pub fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`.
pub fn notify_stopping() {
    notify(&[NotifyState::Stopping]);
}

/// How often the watchdog is fed: half the manager's `WatchdogSec`
/// (`WATCHDOG_USEC`, for this process), as sd_watchdog_enabled(3) advises;
/// `None` without a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero()).map(|d| d / 2)
}

/// Feeds systemd's watchdog (`WATCHDOG=1`) every half `WatchdogSec` from a
/// task of the server's runtime, so the pings stop when the runtime's
/// workers are all stuck and the manager restarts the server. Does nothing
/// without `WATCHDOG_USEC`. The task ends when the handle is dropped.
pub fn spawn_watchdog() -> Option<WatchdogTask> {
    let every = watchdog_interval()?;
    tracing::info!(every_ms = every.as_millis() as u64, "feeding the systemd watchdog");
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    });
    Some(WatchdogTask(task))
}

/// The watchdog's feeding task; dropping it stops the pings.
#[derive(Debug)]
pub struct WatchdogTask(tokio::task::JoinHandle<()>);

impl Drop for WatchdogTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
