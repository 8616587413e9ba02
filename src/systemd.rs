//! Telling the service manager how the process is doing, as systemd's `sd_notify` does.
//!
//! A unit of `Type=notify` counts the service as started only when it says `READY=1`, so
//! `systemctl start` returns (and units ordered after it start) once Banditore listens, not when
//! the process was forked; with `WatchdogSec=` the manager restarts a process that stops saying
//! `WATCHDOG=1` in time, which catches a runtime that is stuck rather than dead. `STOPPING=1`
//! says a shutdown has begun. The protocol is one datagram per message to the Unix socket named
//! by `NOTIFY_SOCKET` (a path, or an abstract name after `@`); without that variable (a shell, a
//! container, the tests) every call does nothing. A leaf: no imports from the crate.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Under a service manager: `READY=1` at once (call it when the listener accepts), `WATCHDOG=1`
/// at half the watchdog's timeout for as long as the runtime turns, shutdown included, and
/// `STOPPING=1` as soon as `shutdown` is cancelled. Runs until aborted; without a manager,
/// returns at once.
pub async fn run(shutdown: CancellationToken) {
    let manager = Notifier::from_env();
    if !manager.is_listening() {
        return;
    }
    if let Err(e) = manager.notify("READY=1") {
        tracing::warn!(error = %e, "cannot tell the service manager that Banditore is ready");
    }
    let mut stopping = false;
    let mut watchdog = manager.watchdog_interval().map(tokio::time::interval);
    loop {
        let tick = async {
            match watchdog.as_mut() {
                Some(interval) => interval.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                let _ = manager.notify("STOPPING=1");
                if watchdog.is_none() {
                    return;
                }
            }
            _ = tick => {
                if let Err(e) = manager.notify("WATCHDOG=1") {
                    tracing::warn!(error = %e, "cannot keep the service manager's watchdog");
                }
            }
        }
    }
}

/// Where the service manager listens, read once from the environment.
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, and `WATCHDOG_USEC` with `WATCHDOG_PID` (the watchdog is this
    /// process's only when the PID is absent or its own).
    pub fn from_env() -> Notifier {
        Notifier::from_vars(|name| std::env::var(name).ok(), std::process::id())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>, pid: u32) -> Notifier {
        let target = var("NOTIFY_SOCKET").and_then(|s| match s.strip_prefix('@') {
            Some(name) if !name.is_empty() => Some(Target::Abstract(name.as_bytes().to_vec())),
            Some(_) => None,
            None if s.starts_with('/') => Some(Target::Path(PathBuf::from(s))),
            None => None,
        });
        let ours = var("WATCHDOG_PID").is_none_or(|p| p.trim().parse::<u32>() == Ok(pid));
        let watchdog = var("WATCHDOG_USEC")
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// Whether a service manager is listening.
    pub fn is_listening(&self) -> bool {
        self.target.is_some()
    }

    /// How often to say `WATCHDOG=1`: half the manager's timeout, as systemd advises; `None`
    /// when no watchdog is set.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.target.as_ref()?;
        self.watchdog.map(|w| w / 2)
    }

    /// Sends one message (`READY=1`, `WATCHDOG=1`, `STOPPING=1`, `STATUS=…`). Failures are
    /// returned for the log; the service goes on either way.
    pub fn notify(&self, message: &str) -> std::io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        send(target, message.as_bytes())
    }
}

#[cfg(unix)]
fn send(target: &Target, message: &[u8]) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let socket = UnixDatagram::unbound()?;
    match target {
        Target::Path(path) => socket.send_to(message, path).map(drop),
        #[cfg(target_os = "linux")]
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message, &address).map(drop)
        }
        #[cfg(not(target_os = "linux"))]
        Target::Abstract(_) => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "abstract socket names exist on Linux only",
        )),
    }
}

#[cfg(not(unix))]
fn send(_: &Target, _: &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "the service manager's socket is a Unix socket",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(vars: &[(&str, &str)], pid: u32) -> Notifier {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Notifier::from_vars(
            |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            pid,
        )
    }

    #[test]
    fn the_socket_is_a_path_or_an_abstract_name() {
        assert_eq!(
            notifier(&[("NOTIFY_SOCKET", "/run/systemd/notify")], 1).target,
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            notifier(&[("NOTIFY_SOCKET", "@sd")], 1).target,
            Some(Target::Abstract(b"sd".to_vec()))
        );
        for odd in ["", "@", "relative/path"] {
            assert!(
                !notifier(&[("NOTIFY_SOCKET", odd)], 1).is_listening(),
                "{odd}"
            );
        }
        assert!(notifier(&[], 1).notify("READY=1").is_ok());
    }

    #[test]
    fn the_watchdog_is_kept_at_half_its_timeout_and_only_for_its_process() {
        let with = |pid: &str| {
            notifier(
                &[
                    ("NOTIFY_SOCKET", "/run/n"),
                    ("WATCHDOG_USEC", "30000000"),
                    ("WATCHDOG_PID", pid),
                ],
                42,
            )
            .watchdog_interval()
        };
        assert_eq!(with("42"), Some(Duration::from_secs(15)));
        assert_eq!(with("43"), None);
        let no_pid = notifier(
            &[("NOTIFY_SOCKET", "/run/n"), ("WATCHDOG_USEC", "2000000")],
            42,
        );
        assert_eq!(no_pid.watchdog_interval(), Some(Duration::from_secs(1)));
        let no_socket = notifier(&[("WATCHDOG_USEC", "2000000")], 42);
        assert_eq!(no_socket.watchdog_interval(), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_message_arrives_as_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let n = notifier(&[("NOTIFY_SOCKET", path.to_str().unwrap())], 1);
        n.notify("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }
}
