//! The vocabulary of Banditore: signals, severities, matchers, incidents and subscribers.
//! Pure types and rules; no I/O.

pub mod incident;
pub mod matcher;
pub mod severity;
pub mod signal;
pub mod subscriber;

pub use incident::{IncidentStatus, UpdateKind};
pub use matcher::Matcher;
pub use severity::Severity;
pub use signal::{Labels, RawSignal, Signal, SignalStatus, Source};
