//! The channel compliance suite: the same rules checked for every channel, through the real
//! binary, against each provider's double, as `store.rs`'s suite checks every store case on both
//! databases. A channel is a [`Harness`] (how to start the app pointed at its double, make one
//! message for one recipient, script the double's next answers and read what arrived), and
//! `compliance!` writes one test per (channel, rule), so that a failure names both:
//! `compliance::sms_vonage::a_gone_recipient_is_marked_and_not_retried`.
//!
//! The rules: a throttle is waited out and costs no attempt; a temporary failure is retried and
//! arrives once; a gone recipient is marked gone and not tried again; a lost reply (the provider
//! acted, its answer never came back) is never posted twice where the provider offers a way to
//! tell (Mastodon's `Idempotency-Key`, Bluesky's records, X's and Facebook's duplicate refusals),
//! and is sent again, arriving twice, where it does not (SMTP, the Bot API, the SMS gateways:
//! asserted as it is); refused credentials pause the channel, keep its deliveries pending and
//! uncounted, and resume once they work again; at a limit's exact edge the longest text goes
//! whole and one unit more is refused, cut or split as the channel documents (each channel's
//! texts, counted by its double, are in `edges`).
//!
//! Where a rule has no meaning for a channel it is left out of that channel's list, and said so
//! here: SMTP has no throttling answer that names a wait (a 421 or 451 is a temporary failure);
//! the social networks post on the account itself, so a recipient cannot be gone (a deleted or
//! suspended account refuses the credentials); Skebby's and a generic gateway's answers name no
//! number that is gone; Vonage's Voice API names no gone number either, a call's "lost reply"
//! cannot be scripted, and a call has no length's edge (its text is said within 600 characters,
//! `channel::voice::spoken`). Facebook's throttle names its wait in whole minutes, so its case checks
//! that the post is deferred that long, uncounted, without waiting for it. "A panic in a send
//! fails that one delivery" is checked by the outbox's unit tests: nothing in the real binary
//! panics on command, and no panic hook is put into production code for a test.

mod direct;
mod edges;
mod hook;
mod social;
mod voice;

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;
use edges::{Arrived, Edge, the_longest_text_goes_whole_and_one_unit_more_as_documented};

/// One channel pointed at its double, with one recipient.
pub(crate) trait Harness: Sized {
    /// The channel's name in the API's deliveries.
    const CHANNEL: &'static str;
    /// Whether the provider lets a retry after a lost reply find what the first attempt did.
    const IDEMPOTENT: bool;

    /// Starts the double and the app, with the recipient subscribed.
    async fn start() -> Self;
    fn app(&self) -> &TestApp;
    /// Makes one new message for the recipient; returns its incident.
    async fn send(&self) -> i64;
    /// Messages the double took for the recipient.
    fn arrived(&self) -> usize;
    /// The subscriber holding the recipient's address, where there is one.
    fn subscriber(&self) -> Option<i64> {
        None
    }

    /// The provider's next answer asks to slow down, with its wait.
    fn throttle_next(&self) {
        unreachable!("{}: no throttle case", Self::CHANNEL)
    }
    /// The provider's next answer is a temporary failure (5xx, SMTP 4xx).
    fn fail_next(&self) {
        unreachable!("{}: no temporary failure case", Self::CHANNEL)
    }
    /// The provider acts on the next request and its answer is lost.
    fn lose_reply_next(&self) {
        unreachable!("{}: no lost reply case", Self::CHANNEL)
    }
    /// While `refused`, the provider refuses the channel's credentials.
    fn refuse_credentials(&self, _refused: bool) {
        unreachable!("{}: no credentials case", Self::CHANNEL)
    }
    /// From now on the recipient is gone; returns words the reason holds.
    fn make_gone(&self) -> &'static str {
        unreachable!("{}: no gone case", Self::CHANNEL)
    }
    /// Send requests the double had for the recipient, refused ones included.
    fn tries(&self) -> usize {
        unreachable!("{}: tries not counted", Self::CHANNEL)
    }
    /// What else a lost reply leaves to check on this provider (the key sent, the look-up made).
    fn after_lost_reply(&self) {}

    /// Starts as [`Harness::start`] does, with what the limits need (a template showing a text
    /// as it is written, a public draft's part for the channel).
    async fn start_for_edges() -> Self {
        Self::start().await
    }
    /// The channel's limits, each at its edge.
    fn edges() -> Vec<Edge> {
        unreachable!("{}: no limits", Self::CHANNEL)
    }
    /// Sends `text` the way `edge` says: what arrived, or the API's refusal.
    async fn publish(&self, _edge: &Edge, _text: &str) -> Result<Arrived, String> {
        unreachable!("{}: no limits", Self::CHANNEL)
    }
}

/// The deliveries of `incident` on `channel`.
async fn deliveries(app: &TestApp, incident: i64, channel: &str) -> Vec<Value> {
    let path = format!("/api/v1/incidents/{incident}/deliveries");
    let all = app.get_json(&path, VIEWER_TOKEN).await;
    let all = all["deliveries"].as_array().cloned().unwrap_or_default();
    all.into_iter()
        .filter(|d| d["channel"] == channel)
        .collect()
}

/// The one delivery of `incident` on the channel, once it is sent, failed or gone.
async fn settled<H: Harness>(h: &H, incident: i64) -> Value {
    let done = |d: &Vec<Value>| {
        d.len() == 1 && ["sent", "failed", "gone"].contains(&d[0]["state"].as_str().unwrap_or(""))
    };
    let found = eventually(|| deliveries(h.app(), incident, H::CHANNEL), done).await;
    found[0].clone()
}

/// Asks `probe` until `done` holds, for at most `within`.
async fn within<T, F, Fut>(within: Duration, mut probe: F, done: impl Fn(&T) -> bool) -> T
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + within;
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "not within {within:?}: {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A throttle is waited out: the message arrives once, and waiting costs no attempt.
pub(crate) async fn a_throttle_is_waited_out_without_an_attempt<H: Harness>() {
    let h = H::start().await;
    h.throttle_next();
    let incident = h.send().await;
    let d = settled(&h, incident).await;
    assert_eq!(d["state"], "sent", "{d}");
    assert_eq!(d["attempts"], 1, "waiting is not an attempt: {d}");
    assert_eq!(h.arrived(), 1, "{d}");
}

/// A temporary failure is retried: the message arrives once, on its second attempt.
pub(crate) async fn a_temporary_failure_is_retried_and_arrives_once<H: Harness>() {
    let h = H::start().await;
    h.fail_next();
    let incident = h.send().await;
    let d = settled(&h, incident).await;
    assert_eq!(d["state"], "sent", "{d}");
    assert_eq!(d["attempts"], 2, "{d}");
    assert_eq!(h.arrived(), 1, "{d}");
}

/// A recipient the provider says is gone is marked gone, with the provider's reason, and not
/// tried again.
pub(crate) async fn a_gone_recipient_is_marked_and_not_retried<H: Harness>() {
    let h = H::start().await;
    let words = h.make_gone();
    let incident = h.send().await;
    let d = settled(&h, incident).await;
    assert_eq!(d["state"], "gone", "{d}");
    assert_eq!(d["attempts"], 1, "{d}");
    let reason = d["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains(words), "{d}");
    assert!(d["next_attempt_at"].is_null(), "{d}");
    assert_eq!(h.tries(), 1, "asked once: {d}");
    assert_eq!(h.arrived(), 0);
    if let Some(id) = h.subscriber() {
        let path = format!("/api/v1/subscribers/{id}");
        let s = h.app().get_json(&path, ADMIN_TOKEN).await;
        assert_eq!(s["addresses"][0]["state"], "gone", "{s}");
    }
}

/// The provider acted and its answer was lost: where it offers a way to tell, the retry finds
/// the first attempt's post and nothing is posted twice; where it does not, the message is sent
/// again and arrives twice (better twice than never).
pub(crate) async fn a_lost_reply_is_sent_again_only_where_nothing_tells<H: Harness>() {
    let h = H::start().await;
    h.lose_reply_next();
    let incident = h.send().await;
    let d = settled(&h, incident).await;
    assert_eq!(d["state"], "sent", "{d}");
    assert_eq!(d["attempts"], 2, "the lost answer cost an attempt: {d}");
    let expected = if H::IDEMPOTENT { 1 } else { 2 };
    assert_eq!(h.arrived(), expected, "{d}");
    h.after_lost_reply();
}

/// Refused credentials pause the channel: the delivery waits, pending and uncounted, and goes
/// out once, as its first attempt, when the credentials work again.
pub(crate) async fn refused_credentials_pause_the_channel_until_they_work<H: Harness>() {
    let h = H::start().await;
    h.refuse_credentials(true);
    let incident = h.send().await;
    let paused = |d: &Vec<Value>| {
        d.len() == 1
            && d[0]["state"] == "pending"
            && (d[0]["last_error"].as_str()).is_some_and(|e| e.contains("channel paused"))
    };
    let waiting = eventually(|| deliveries(h.app(), incident, H::CHANNEL), paused).await;
    assert_eq!(waiting[0]["attempts"], 0, "{waiting:?}");
    let ready = h.app().get("/readyz", None).await.text().await.unwrap();
    let says = format!("channel {} paused", H::CHANNEL);
    assert!(ready.contains(&says), "{ready}");
    assert_eq!(h.arrived(), 0);
    h.refuse_credentials(false);
    let d = settled(&h, incident).await;
    assert_eq!(d["state"], "sent", "{d}");
    assert_eq!(d["attempts"], 1, "a paused channel counts no attempt: {d}");
    assert_eq!(h.arrived(), 1, "{d}");
    let ready = || async { h.app().get("/readyz", None).await.text().await.unwrap() };
    within(Duration::from_secs(5), ready, |r| r == "ready\n").await;
}

/// One test per (channel, rule): `compliance!(name: Harness => [rule, …]; …)`.
macro_rules! compliance {
    ($($channel:ident: $harness:ty => [$($rule:ident),+ $(,)?];)+) => {
        $(
            mod $channel {
                use super::*;
                $(
                    #[tokio::test]
                    async fn $rule() {
                        super::$rule::<$harness>().await;
                    }
                )+
            }
        )+
    };
}

compliance! {
    email: direct::Email => [
        a_temporary_failure_is_retried_and_arrives_once,
        a_gone_recipient_is_marked_and_not_retried,
        a_lost_reply_is_sent_again_only_where_nothing_tells,
        refused_credentials_pause_the_channel_until_they_work,
        the_longest_text_goes_whole_and_one_unit_more_as_documented,
    ];
    email_relay: direct::EmailRelay => [refused_credentials_pause_the_channel_until_they_work];
    telegram: direct::Telegram => [
        a_throttle_is_waited_out_without_an_attempt,
        a_temporary_failure_is_retried_and_arrives_once,
        a_gone_recipient_is_marked_and_not_retried,
        a_lost_reply_is_sent_again_only_where_nothing_tells,
        refused_credentials_pause_the_channel_until_they_work,
        the_longest_text_goes_whole_and_one_unit_more_as_documented,
    ];
    sms_twilio: direct::Sms<direct::Twilio> => [
        a_throttle_is_waited_out_without_an_attempt,
        a_temporary_failure_is_retried_and_arrives_once,
        a_gone_recipient_is_marked_and_not_retried,
        a_lost_reply_is_sent_again_only_where_nothing_tells,
        refused_credentials_pause_the_channel_until_they_work,
        the_longest_text_goes_whole_and_one_unit_more_as_documented,
    ];
    sms_vonage: direct::Sms<direct::Vonage> => [
        a_throttle_is_waited_out_without_an_attempt,
        a_temporary_failure_is_retried_and_arrives_once,
        a_gone_recipient_is_marked_and_not_retried,
        a_lost_reply_is_sent_again_only_where_nothing_tells,
        refused_credentials_pause_the_channel_until_they_work,
        the_longest_text_goes_whole_and_one_unit_more_as_documented,
    ];
    sms_skebby: direct::Sms<direct::Skebby> => [
        a_throttle_is_waited_out_without_an_attempt,
        a_temporary_failure_is_retried_and_arrives_once,
        a_lost_reply_is_sent_again_only_where_nothing_tells,
        refused_credentials_pause_the_channel_until_they_work,
        the_longest_text_goes_whole_and_one_unit_more_as_documented,
    ];
    sms_generic: direct::Sms<direct::Generic> => [
        a_throttle_is_waited_out_without_an_attempt,
        a_temporary_failure_is_retried_and_arrives_once,
        a_lost_reply_is_sent_again_only_where_nothing_tells,
        refused_credentials_pause_the_channel_until_they_work,
        the_longest_text_goes_whole_and_one_unit_more_as_documented,
    ];
    voice_twilio: voice::Call<voice::Twilio> => [
        a_throttle_is_waited_out_without_an_attempt,
        a_temporary_failure_is_retried_and_arrives_once,
        a_gone_recipient_is_marked_and_not_retried,
        refused_credentials_pause_the_channel_until_they_work,
    ];
    voice_vonage: voice::Call<voice::Vonage> => [
        a_throttle_is_waited_out_without_an_attempt,
        a_temporary_failure_is_retried_and_arrives_once,
        refused_credentials_pause_the_channel_until_they_work,
    ];
    mastodon: social::Mastodon => [
        a_throttle_is_waited_out_without_an_attempt,
        a_temporary_failure_is_retried_and_arrives_once,
        a_lost_reply_is_sent_again_only_where_nothing_tells,
        refused_credentials_pause_the_channel_until_they_work,
        the_longest_text_goes_whole_and_one_unit_more_as_documented,
    ];
    bluesky: social::Bluesky => [
        a_throttle_is_waited_out_without_an_attempt,
        a_temporary_failure_is_retried_and_arrives_once,
        a_lost_reply_is_sent_again_only_where_nothing_tells,
        refused_credentials_pause_the_channel_until_they_work,
        the_longest_text_goes_whole_and_one_unit_more_as_documented,
    ];
    x: social::X => [
        a_throttle_is_waited_out_without_an_attempt,
        a_temporary_failure_is_retried_and_arrives_once,
        a_lost_reply_is_sent_again_only_where_nothing_tells,
        refused_credentials_pause_the_channel_until_they_work,
        the_longest_text_goes_whole_and_one_unit_more_as_documented,
    ];
    webhook: hook::Webhook => [
        a_temporary_failure_is_retried_and_arrives_once,
        a_gone_recipient_is_marked_and_not_retried,
        a_lost_reply_is_sent_again_only_where_nothing_tells,
    ];
    facebook: social::Facebook => [
        a_throttle_of_minutes_defers_the_post_that_long_uncounted,
        a_temporary_failure_is_retried_and_arrives_once,
        a_lost_reply_is_sent_again_only_where_nothing_tells,
        refused_credentials_pause_the_channel_until_they_work,
        the_longest_text_goes_whole_and_one_unit_more_as_documented,
    ];
}

/// Facebook names its wait in whole minutes (`estimated_time_to_regain_access`): the post is
/// deferred that long, with no attempt counted, and nothing is posted meanwhile.
pub(crate) async fn a_throttle_of_minutes_defers_the_post_that_long_uncounted<H: Harness>() {
    let h = H::start().await;
    h.throttle_next();
    let incident = h.send().await;
    let wait = |d: &Value| {
        let next = d["next_attempt_at"]
            .as_str()?
            .parse::<jiff::Timestamp>()
            .ok()?;
        Some(next.duration_since(jiff::Timestamp::now()).as_secs())
    };
    let deferred = |d: &Vec<Value>| {
        d.len() == 1 && d[0]["state"] == "pending" && wait(&d[0]).is_some_and(|w| w > 30)
    };
    let d = eventually(|| deliveries(h.app(), incident, H::CHANNEL), deferred).await;
    let d = &d[0];
    assert_eq!(d["attempts"], 0, "{d}");
    let wait = wait(d).unwrap_or_default();
    assert!((50..=61).contains(&wait), "deferred {wait} s: {d}");
    assert_eq!(h.arrived(), 0);
}
