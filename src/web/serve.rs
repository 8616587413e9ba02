//! Serving connections: HTTP/1.1 through hyper, with a header read timeout and a cap on open
//! connections, so that clients that connect and wait cannot use up the process's file
//! descriptors and keep monitors and health checks out.
//!
//! hyper starts the header read timer when a connection opens and again when it has answered a
//! request, so `server.header_read_timeout` bounds both a header sent slowly and a kept-alive
//! connection left idle. At `server.max_connections`, a new connection takes the place of the
//! oldest one with no request in flight (a header still arriving, or idle between requests):
//! slow clients give way to whoever comes next, however many they open. Only when every
//! connection has a request in flight is the new one closed at once, freeing its descriptor.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How connections are held.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets every request in flight
/// finish and closes the connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let slots = Arc::new(Slots::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut accept_errors = AcceptErrors::default();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_errors.handle(e, &slots).await;
                    continue;
                }
            },
        };
        let Some(slot) = slots.admit() else {
            metrics::counter!("banditore_connections_refused_total", "why" => "full").increment(1);
            // Dropped unaccepted work: the socket closes now and its descriptor is free.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let router = router.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let busy = slot.busy.clone();
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    // What `into_make_service_with_connect_info` gave handlers.
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let guard = Busy::enter(&busy);
                    let router = router.clone();
                    async move {
                        let _guard = guard;
                        router.oneshot(request).await
                    }
                });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        // Timeouts, resets and malformed requests: the client's business.
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                }
                // Dropping the connection closes the socket.
                _ = slot.evicted.cancelled() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                }
            }
            drop(slot);
        });
    }
    // No new connections; those open finish their requests and close.
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Open connections, oldest first, and whether each has a request in flight.
struct Slots {
    max: usize,
    open: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Held>,
}

struct Held {
    busy: Arc<AtomicBool>,
    evicted: CancellationToken,
}

/// One admitted connection; dropping it frees its place.
struct Slot {
    id: u64,
    busy: Arc<AtomicBool>,
    evicted: CancellationToken,
    slots: Arc<Slots>,
}

impl Slots {
    fn new(max: usize) -> Slots {
        Slots {
            max: max.max(1),
            open: Mutex::new(Table::default()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection: a free one, or the place of the oldest idle connection,
    /// which is closed; `None` when every connection has a request in flight.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut table = self.table();
        if table.open.len() >= self.max && !Self::evict_oldest_idle(&mut table) {
            return None;
        }
        let id = table.next;
        table.next += 1;
        let held = Held {
            busy: Arc::new(AtomicBool::new(false)),
            evicted: CancellationToken::new(),
        };
        let slot = Slot {
            id,
            busy: held.busy.clone(),
            evicted: held.evicted.clone(),
            slots: self.clone(),
        };
        table.open.insert(id, held);
        metrics::gauge!("banditore_connections_open").set(table.open.len() as f64);
        Some(slot)
    }

    /// Closes the oldest connection without a request in flight, if there is one.
    fn evict_oldest_idle(table: &mut Table) -> bool {
        let Some(id) = table
            .open
            .iter()
            .find(|(_, held)| !held.busy.load(Ordering::Acquire))
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(held) = table.open.remove(&id) {
            held.evicted.cancel();
        }
        metrics::counter!("banditore_connections_refused_total", "why" => "idle_closed")
            .increment(1);
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.slots.table();
        table.open.remove(&self.id);
        metrics::gauge!("banditore_connections_open").set(table.open.len() as f64);
    }
}

/// Marks a connection busy while one of its requests is being answered.
struct Busy(Arc<AtomicBool>);

impl Busy {
    fn enter(flag: &Arc<AtomicBool>) -> Busy {
        flag.store(true, Ordering::Release);
        Busy(flag.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Failed accepts: logged at most once a second, with a pause so that a lasting failure does not
/// spin the loop.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    since_logged: u64,
}

impl AcceptErrors {
    async fn handle(&mut self, e: std::io::Error, slots: &Slots) {
        use std::io::ErrorKind;
        // A client that gave up before being accepted: nothing is wrong here.
        if matches!(
            e.kind(),
            ErrorKind::ConnectionAborted
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionRefused
        ) {
            return;
        }
        // Out of descriptors (`server.max_connections` above what the rest leaves): an idle
        // connection gives its descriptor to the next.
        let out_of_files = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
        if out_of_files {
            Slots::evict_oldest_idle(&mut slots.table());
        }
        self.since_logged += 1;
        if self
            .last_logged
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(error = %e, failures = self.since_logged, "cannot accept connections");
            self.last_logged = Some(Instant::now());
            self.since_logged = 0;
        }
        tokio::time::sleep(Duration::from_millis(if out_of_files { 10 } else { 100 })).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_closes_its_oldest_idle_connection_and_refuses_when_all_are_busy() {
        let slots = Arc::new(Slots::new(2));
        let first = slots.admit().unwrap();
        let second = slots.admit().unwrap();
        let _busy = Busy::enter(&first.busy);
        let third = slots.admit().unwrap();
        assert!(second.evicted.is_cancelled() && !first.evicted.is_cancelled());
        let _also_busy = Busy::enter(&third.busy);
        assert!(slots.admit().is_none());
        drop(second);
        assert_eq!(
            slots.table().open.len(),
            2,
            "an evicted slot was already freed"
        );
        drop(third);
        assert!(slots.admit().is_some());
    }
}
