//! Wake-ups between the stages of one process: new signals wake the pipeline, new deliveries
//! ring every dispatcher's own bell, a leader stepping down wakes the campaign, another replica
//! doubting a probe calls this replica's check of it. A leaf: it knows
//! nothing of the stages it wakes, so any of them (and the bot, and the web handlers) can hold it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// In-process wake-ups between stages.
#[derive(Clone, Default)]
pub struct Wakers {
    /// New signals: run the engine.
    pub pipeline: Arc<Notify>,
    /// Set when an update was written outside the engine (by hand): the router must run.
    route: Arc<AtomicBool>,
    /// New deliveries: run the dispatchers.
    pub dispatch: Bells,
    /// The leader stepped down: campaign now.
    pub leader: Arc<Notify>,
    /// Another replica doubts a probe: look at it now.
    pub probes: Calls,
}

impl Wakers {
    /// An update was written by hand: route it now.
    pub fn updates_written(&self) {
        self.route.store(true, Ordering::SeqCst);
        self.pipeline.notify_one();
    }
}

/// One wake-up per dispatcher (one per channel): each keeps its own, so a dispatcher busy
/// when the bell rings still finds it when it next waits. The leader's writer of citizens'
/// deliveries keeps one too: a decision on a draft rings it with the dispatchers, a desk's
/// message does not ([`Bells::ring_desks`]).
#[derive(Clone, Default)]
pub struct Bells(Arc<std::sync::Mutex<Rung>>);

#[derive(Default)]
struct Rung {
    dispatchers: Vec<Arc<Notify>>,
    statements: Vec<Arc<Notify>>,
}

impl Bells {
    /// A new dispatcher's own bell.
    pub fn bell(&self) -> Arc<Notify> {
        let bell = Arc::new(Notify::new());
        if let Ok(mut rung) = self.0.lock() {
            rung.dispatchers.push(bell.clone());
        }
        bell
    }

    /// The bell of a loop that writes the deliveries of public statements: rung by
    /// [`Bells::ring`], not by [`Bells::ring_desks`].
    pub fn statements_bell(&self) -> Arc<Notify> {
        let bell = Arc::new(Notify::new());
        if let Ok(mut rung) = self.0.lock() {
            rung.statements.push(bell.clone());
        }
        bell
    }

    /// Wakes every dispatcher, and the writers of public statements' deliveries.
    pub fn ring(&self) {
        if let Ok(rung) = self.0.lock() {
            for bell in rung.dispatchers.iter().chain(&rung.statements) {
                bell.notify_one();
            }
        }
    }

    /// Wakes the dispatchers only: what was written goes to desks, and no public statement
    /// was published. A writer woken for nothing would read the store beside the first sends.
    pub fn ring_desks(&self) {
        if let Ok(rung) = self.0.lock() {
            for bell in &rung.dispatchers {
                bell.notify_one();
            }
        }
    }
}

impl Wakers {
    /// Takes the flag [`Wakers::updates_written`] set: true once per hand-written batch.
    pub fn take_route(&self) -> bool {
        self.route.swap(false, Ordering::SeqCst)
    }
}

/// One bell per named loop (a probe's checks), rung by name.
#[derive(Clone, Default)]
pub struct Calls(Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>>);

impl Calls {
    /// The bell of the loop named `name` (the same one for every caller).
    pub fn bell(&self, name: &str) -> Arc<Notify> {
        match self.0.lock() {
            Ok(mut bells) => bells.entry(name.to_owned()).or_default().clone(),
            Err(_) => Arc::new(Notify::new()),
        }
    }

    /// Wakes the loop named `name`, if there is one; a call made while it is busy is kept for
    /// its next wait.
    pub fn ring(&self, name: &str) {
        if let Ok(bells) = self.0.lock()
            && let Some(bell) = bells.get(name)
        {
            bell.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::Bells;

    /// Whether the bell was rung since it was last heard.
    fn rung(bell: &tokio::sync::Notify) -> bool {
        bell.notified().now_or_never().is_some()
    }

    #[test]
    fn a_desks_message_wakes_the_dispatchers_and_not_the_statements_writer() {
        let bells = Bells::default();
        let (email, sms) = (bells.bell(), bells.bell());
        let statements = bells.statements_bell();
        bells.ring_desks();
        assert!(rung(&email) && rung(&sms));
        assert!(!rung(&statements));
        bells.ring();
        assert!(rung(&email) && rung(&sms) && rung(&statements));
        assert!(
            !rung(&email) && !rung(&sms) && !rung(&statements),
            "each ring is heard once"
        );
    }
}
