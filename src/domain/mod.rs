//! The vocabulary of Banditore: signals, severities, matchers, incidents and subscribers, what
//! probes find, and what people may write in them.
//! Pure types and rules; no I/O.

pub mod affected;
pub mod escalation;
pub mod finding;
pub mod fiscal_code;
pub mod incident;
pub mod matcher;
pub mod severity;
pub mod signal;
pub mod subscriber;
pub mod text;
pub mod window;

pub use finding::Finding;
pub use incident::{IncidentStatus, UpdateKind};
pub use matcher::{MatchOp, Matcher};
pub use severity::Severity;
pub use signal::{Labels, RawSignal, Signal, SignalStatus, Source};
