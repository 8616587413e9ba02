//! Configuration: compiled-in defaults, a deployment file, then `BANDITORE__SECTION__KEY`
//! environment variables, each layer on top of the one before.
//!
//! Loading never stops at the first mistake: a value of the wrong type is reported with its key
//! path and replaced by its default so the rest can still be checked, and unknown keys (typos) are
//! reported too. [`validate`] then checks meaning (addresses, secrets, subscribers, templates).

mod load;
mod secret;
mod section;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::domain::Severity;
use crate::domain::escalation::EscalationStepSpec;
use crate::domain::subscriber::{Language, SubscriberSpec};

pub use load::{Problem, load};
pub use secret::{EXAMPLE_MARKER, Secret, SecretSource};
pub use section::ChannelSection;
pub use validate::{
    ChannelKeys, HmacKey, TokenKey, Validated, load_and_validate, redact_url, validate,
};

pub const DEFAULTS: &str = include_str!("../../config/default.toml");

/// A config enum written as one of a few lower-case words, with an error that lists them.
macro_rules! word_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($word => Ok($name::$variant),)+
                    other => Err(format!("`{other}` is not one of {}", Self::WORDS.join(", "))),
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let word = <String as serde::Deserialize>::deserialize(d)?;
                word.trim().to_ascii_lowercase().parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

// The channels' sections are read with it too, each from its own folder.
pub(crate) use word_enum;

/// A `SecretSource` getter for a secret written as `<key>`, `<key>_file` or `<key>_env`.
macro_rules! secret_source {
    ($name:ident, $value:ident, $file:ident, $env:ident) => {
        pub fn $name(&self) -> $crate::settings::SecretSource {
            $crate::settings::SecretSource {
                value: self.$value.clone(),
                file: self.$file.clone(),
                env: self.$env.clone(),
            }
        }
    };
}
pub(crate) use secret_source;

// After `word_enum!`, which they use.
pub(crate) mod check;
mod heartbeats;
mod probes;
mod status_page;
pub use heartbeats::{
    HeartbeatSpec, NAME_MAX as HEARTBEAT_NAME_MAX, check_spec as check_heartbeat,
    valid_name as valid_heartbeat_name,
};
pub use probes::{
    MaintenanceSpec, ProbeKind, ProbeSpec, ProbingSettings, PublicMaintenance, Recurrence,
    StatusSet,
};
// Each channel's section is declared in the channel's folder.
pub use crate::channel::appio::settings::AppIoSettings;
pub use crate::channel::bluesky::settings::BlueskySettings;
pub use crate::channel::email::settings::{EmailSettings, EmailTls};
pub use crate::channel::facebook::settings::{FacebookSettings, FacebookUpdates};
pub use crate::channel::log::settings::LogChannelSettings;
pub use crate::channel::mastodon::settings::{MastodonSettings, MastodonVisibility};
pub use crate::channel::sms::settings::{
    BodyFormat, SmsProviderKeys, SmsProviderKind, SmsProviderSettings, SmsSettings,
};
pub use crate::channel::telegram::settings::{TelegramKeys, TelegramMode, TelegramSettings};
pub use crate::channel::voice::settings::{
    VoiceProviderKeys, VoiceProviderKind, VoiceProviderSettings, VoiceSettings,
};
pub use crate::channel::webhook::settings::WebhookSettings;
pub use crate::channel::whatsapp::settings::{WhatsAppSettings, WhatsAppTemplate};
pub use crate::channel::x::settings::XSettings;
pub use status_page::{
    LANGUAGES as STATUS_LANGUAGES, StatusService, StatusSettings, SubscribeSettings,
    status_subscriber,
};

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub cluster: ClusterSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub ingest: IngestSettings,
    pub routing: RoutingSettings,
    pub templates: TemplateSettings,
    pub outbox: OutboxSettings,
    pub channels: ChannelSettings,
    pub approval: ApprovalSettings,
    pub escalation: EscalationSettings,
    pub affected: AffectedSettings,
    pub subscribers: Vec<SubscriberSpec>,
    pub probing: ProbingSettings,
    pub probes: Vec<ProbeSpec>,
    pub maintenance: Vec<MaintenanceSpec>,
    pub heartbeats: Vec<HeartbeatSpec>,
    pub status: StatusSettings,
    /// Secret files still holding the repository's example values, found at loading:
    /// `check-config` warns of them and `serve` refuses them.
    #[serde(skip)]
    pub example_secrets: Vec<Problem>,
}

word_enum! {
    pub enum ApprovalPolicy {
        /// Sent at once, like internal alerts.
        Auto => "auto",
        /// Drafted, and sent when the communications office approves.
        Approval => "approval",
        /// Drafted, and sent by itself after `timeout` if nobody decided.
        ApprovalWithTimeout => "approval_with_timeout",
    }
}

/// Each audience's escalation policy, which a subscriber's own replaces: audiences not listed
/// (and subscribers without one) are told on every channel at once.
#[derive(Debug, Clone, Deserialize)]
pub struct EscalationSettings {
    pub audiences: BTreeMap<String, Vec<EscalationStepSpec>>,
}

/// What happens to each audience's messages: audiences not listed are sent at once.
#[derive(Debug, Clone, Deserialize)]
pub struct ApprovalSettings {
    pub audiences: BTreeMap<String, AudiencePolicy>,
    /// The audience of the communications office: its subscribers' email addresses and
    /// Telegram chats are told when a draft is waiting (empty: nobody is told).
    pub notify_audience: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AudiencePolicy {
    pub policy: ApprovalPolicy,
    /// `approval_with_timeout`: how long silence may last.
    #[serde(default = "default_approval_timeout")]
    pub timeout: Dur,
}

fn default_approval_timeout() -> Dur {
    Dur(Duration::from_secs(15 * 60))
}

impl ApprovalSettings {
    /// The policy for `audience`, and for timeouts when to publish by itself.
    pub fn policy(&self, audience: &str) -> (ApprovalPolicy, Option<Duration>) {
        match self.audiences.get(audience) {
            Some(p) if p.policy == ApprovalPolicy::ApprovalWithTimeout => {
                (p.policy, Some(p.timeout.get()))
            }
            Some(p) => (p.policy, None),
            None => (ApprovalPolicy::Auto, None),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    pub public_url: String,
    pub max_body_bytes: usize,
    pub request_timeout: Dur,
    /// How long a client may take to send a request's headers, from when it connects or from
    /// the previous answer on a kept-alive connection.
    pub header_read_timeout: Dur,
    /// Connections held open at once; beyond, the oldest idle one is closed, or the new one.
    pub max_connections: usize,
    pub shutdown_timeout: Dur,
    pub time_zone: String,
    pub secret_key: Option<Secret>,
    pub secret_key_file: Option<PathBuf>,
    pub secret_key_env: Option<String>,
}

word_enum! {
    pub enum SqliteSynchronous {
        Full => "full",
        Normal => "normal",
    }
}

/// Incidents' affected lists (`POST /api/v1/incidents/{id}/affected`).
#[derive(Debug, Clone, Deserialize)]
pub struct AffectedSettings {
    /// How long a list is kept after its incident is resolved.
    pub retention: Dur,
    /// The largest upload, read as a stream (never held whole).
    pub max_upload_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StoreSettings {
    pub url: String,
    pub sqlite_synchronous: SqliteSynchronous,
    pub max_connections: u32,
    pub replicas: u32,
    pub retention: Dur,
    /// PostgreSQL's password, kept out of the URL.
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
}

impl StoreSettings {
    pub fn password(&self) -> SecretSource {
        SecretSource {
            value: self.password.clone(),
            file: self.password_file.clone(),
            env: self.password_env.clone(),
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite://")
    }
}

word_enum! {
    pub enum LogFormat {
        Text => "text",
        Json => "json",
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClusterSettings {
    pub instance: String,
    pub leader_lease: Dur,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

word_enum! {
    pub enum Role {
        /// May post signals.
        Ingest => "ingest",
        /// May read incidents and deliveries.
        Viewer => "viewer",
        /// Viewer, and may open and update incidents by hand and manage subscribers.
        Operator => "operator",
        /// Viewer, and may open and update incidents and decide on public drafts.
        Communicator => "communicator",
        /// May upload, read and delete incidents' affected lists, nothing else: a booking
        /// system's token.
        Booking => "booking",
        /// Everything, including subscribers.
        Admin => "admin",
    }
}

/// What a request needs; roles grant sets of these, the same on the API and in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Ingest,
    Read,
    Incidents,
    Subscribers,
    Drafts,
    /// Incidents' affected lists: personal data of people with appointments.
    Affected,
    Admin,
}

impl Permission {
    pub fn describe(self) -> &'static str {
        match self {
            Permission::Ingest => "posting signals",
            Permission::Read => "reading",
            Permission::Incidents => "writing incidents",
            Permission::Subscribers => "managing subscribers",
            Permission::Drafts => "deciding on public drafts",
            Permission::Affected => "uploading and reading affected lists",
            Permission::Admin => "administration",
        }
    }
}

impl Role {
    /// Whether holding `self` allows `needed`.
    pub fn allows(self, needed: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Communicator => matches!(needed, P::Read | P::Incidents | P::Drafts),
            Role::Operator => matches!(needed, P::Read | P::Incidents | P::Subscribers),
            Role::Viewer => needed == P::Read,
            Role::Ingest => needed == P::Ingest,
            Role::Booking => needed == P::Affected,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenSettings {
    pub name: String,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub roles: Vec<Role>,
}

impl TokenSettings {
    pub fn secret(&self) -> SecretSource {
        SecretSource {
            value: self.token.clone(),
            file: self.token_file.clone(),
            env: self.token_env.clone(),
        }
    }
}

/// An HMAC signature scheme that authenticates ingest requests by their body, as Grafana's
/// webhook contact point signs them.
#[derive(Debug, Clone, Deserialize)]
pub struct HmacSettings {
    pub name: String,
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    #[serde(default = "default_hmac_header")]
    pub header: String,
    /// When set, the signed content is `<timestamp>:<body>` and the timestamp must be recent.
    pub timestamp_header: Option<String>,
    #[serde(default = "default_hmac_tolerance")]
    pub tolerance: Dur,
    /// Text before the hex digest in the header, such as `sha256=`.
    #[serde(default)]
    pub prefix: String,
}

fn default_hmac_header() -> String {
    "X-Grafana-Alerting-Signature".to_owned()
}

fn default_hmac_tolerance() -> Dur {
    Dur(Duration::from_secs(300))
}

impl HmacSettings {
    pub fn secret(&self) -> SecretSource {
        SecretSource {
            value: self.secret.clone(),
            file: self.secret_file.clone(),
            env: self.secret_env.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub tokens: Vec<TokenSettings>,
    pub hmac: Vec<HmacSettings>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IngestSettings {
    pub default_severity: Severity,
    pub uptime_kuma_severity: Severity,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoutingSettings {
    pub group_by: Vec<String>,
    pub group_wait: Dur,
    pub group_interval: Dur,
    pub flap_hold_down: Dur,
    pub default_language: Language,
}

impl RoutingSettings {
    /// The engine's timers.
    pub fn timing(&self) -> crate::domain::incident::Timing {
        crate::domain::incident::Timing {
            group_wait: self.group_wait.get(),
            group_interval: self.group_interval.get(),
            flap_hold_down: self.flap_hold_down.get(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TemplateSettings {
    pub dir: PathBuf,
    pub fallback_language: Language,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutboxSettings {
    pub lease: Dur,
    pub send_timeout: Dur,
    /// Told when a channel is paused or resumes (empty: nobody).
    pub notify_audience: String,
    pub batch_size: u32,
    pub max_attempts: u32,
    pub retry_initial: Dur,
    pub retry_max: Dur,
    pub poll_interval: Dur,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChannelSettings {
    pub email: EmailSettings,
    pub telegram: TelegramSettings,
    pub sms: SmsSettings,
    pub mastodon: MastodonSettings,
    pub bluesky: BlueskySettings,
    pub x: XSettings,
    pub facebook: FacebookSettings,
    pub log: LogChannelSettings,
    pub webhook: WebhookSettings,
    pub voice: VoiceSettings,
    pub appio: AppIoSettings,
    pub whatsapp: WhatsAppSettings,
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not an IP address and port like 127.0.0.1:8080 or [::]:8080"
        ))
    })
}

impl ServerSettings {
    pub fn secret_key(&self) -> SecretSource {
        SecretSource {
            value: self.secret_key.clone(),
            file: self.secret_key_file.clone(),
            env: self.secret_key_env.clone(),
        }
    }
}

/// A duration written as `"500ms"`, `"30s"`, `"2m"`, `"1h 30m"`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Text(t) => humantime::parse_duration(t.trim()).map(Dur).map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{t}` is not a duration like \"500ms\", \"30s\" or \"2m\": {e}"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow() {
        use Permission as P;
        assert!(Role::Admin.allows(P::Ingest) && Role::Admin.allows(P::Drafts));
        assert!(Role::Operator.allows(P::Read) && Role::Operator.allows(P::Subscribers));
        assert!(!Role::Operator.allows(P::Drafts) && !Role::Operator.allows(P::Admin));
        assert!(Role::Communicator.allows(P::Drafts) && Role::Communicator.allows(P::Incidents));
        assert!(!Role::Communicator.allows(P::Subscribers));
        assert!(!Role::Ingest.allows(P::Read));
        assert!(Role::Booking.allows(P::Affected) && Role::Admin.allows(P::Affected));
        assert!(!Role::Booking.allows(P::Read) && !Role::Operator.allows(P::Affected));
        assert!(!Role::Viewer.allows(P::Incidents));
    }

    #[test]
    fn durations() {
        let d: Dur = serde_json::from_str("\"1m 30s\"").unwrap();
        assert_eq!(d.get(), Duration::from_secs(90));
        let d: Dur = serde_json::from_str("5").unwrap();
        assert_eq!(d.get(), Duration::from_secs(5));
        assert!(serde_json::from_str::<Dur>("\"soon\"").is_err());
    }
}
