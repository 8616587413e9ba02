//! Bluesky: `com.atproto.repo.createRecord` of an `app.bsky.feed.post` on the account's PDS.
//!
//! - The session is made once (`createSession`, with an app password) and kept; an expired
//!   access token is renewed with `refreshSession`, and only a refused refresh logs in again.
//! - Links and hashtags are not found by Bluesky itself: each URL becomes a link facet and each
//!   hashtag a tag facet, their ranges in UTF-8 bytes of the text.
//! - Updates are replies: `root` is the incident's first post, `parent` its latest.
//! - A retry after a lost answer first looks at the account's latest posts (`listRecords`) for
//!   this very text, and keeps that post instead of making a second one.
//! - The provider id is the post's `uri` and `cid`, separated by a space: replies need both.

pub mod settings;

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::channel::social::{RateGate, excerpt, header_number, reset_unix, thread, unreachable};
use crate::channel::{Channel, Outgoing, Receipt, SendError};
use crate::domain::subscriber::ChannelKind;
use crate::render::social::{tags, urls};
use crate::settings::{BlueskySettings, Secret};
use crate::store::Store;

const KIND: ChannelKind = ChannelKind::Bluesky;
const POST: &str = "app.bsky.feed.post";
const LINK: &str = "app.bsky.richtext.facet#link";
const TAG: &str = "app.bsky.richtext.facet#tag";
/// How many of the account's latest posts a retry looks through for its own.
const LOOK_BACK: u32 = 25;

pub struct BlueskyChannel {
    http: reqwest::Client,
    base: String,
    identifier: String,
    password: Secret,
    language: String,
    store: Arc<dyn Store>,
    session: tokio::sync::Mutex<Option<Session>>,
    gate: RateGate,
}

#[derive(Clone, Deserialize)]
struct Session {
    did: String,
    #[serde(rename = "accessJwt")]
    access: String,
    #[serde(rename = "refreshJwt")]
    refresh: String,
}

#[derive(Deserialize)]
struct Created {
    uri: String,
    cid: String,
}

#[derive(Deserialize, Default)]
struct XrpcError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct Records {
    #[serde(default)]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    uri: String,
    cid: String,
    value: Value,
}

/// A post a reply points at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ref {
    uri: String,
    cid: String,
}

impl Ref {
    fn parse(provider_id: &str) -> Option<Ref> {
        let (uri, cid) = provider_id.split_once(' ')?;
        Some(Ref {
            uri: uri.to_owned(),
            cid: cid.to_owned(),
        })
    }

    fn json(&self) -> Value {
        json!({"uri": self.uri, "cid": self.cid})
    }
}

/// The facets of `text`, each by its range in UTF-8 bytes: a link facet over each URL, a tag
/// facet (the tag without `#`) over each hashtag that is not inside a link.
pub fn facets(text: &str) -> Vec<Value> {
    let links: Vec<(Range<usize>, &str)> = urls(text).collect();
    let mut facets: Vec<(usize, Value)> = links
        .iter()
        .map(|(range, url)| {
            (
                range.start,
                facet(range, json!({"$type": LINK, "uri": url})),
            )
        })
        .collect();
    for (range, tag) in tags(text) {
        if !links
            .iter()
            .any(|(link, _)| link.start < range.end && range.start < link.end)
        {
            let feature = json!({"$type": TAG, "tag": tag});
            facets.push((range.start, facet(&range, feature)));
        }
    }
    facets.sort_by_key(|(start, _)| *start);
    facets.into_iter().map(|(_, facet)| facet).collect()
}

fn facet(range: &Range<usize>, feature: Value) -> Value {
    json!({
        "index": {"byteStart": range.start, "byteEnd": range.end},
        "features": [feature],
    })
}

/// What one answer from the PDS came to.
enum Answer {
    Ok(String),
    /// The access token expired or is refused: renew the session and ask again.
    Session,
    Failed(SendError),
}

impl BlueskyChannel {
    pub fn new(
        settings: &BlueskySettings,
        password: Secret,
        language: &str,
        store: Arc<dyn Store>,
    ) -> Result<BlueskyChannel, String> {
        Ok(BlueskyChannel {
            http: crate::channel::social::http_client(KIND, settings.timeout.get())?,
            base: settings.base_url.trim_end_matches('/').to_owned(),
            identifier: settings.identifier.trim().to_owned(),
            password,
            language: language.to_owned(),
            store,
            session: tokio::sync::Mutex::new(None),
            gate: RateGate::default(),
        })
    }

    fn url(&self, method: &str) -> String {
        format!("{}/xrpc/{method}", self.base)
    }

    /// Reads an answer: rate limits close the gate, token trouble asks for a new session.
    async fn answer(&self, resp: reqwest::Response, what: &str) -> Answer {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match resp.text().await {
            Ok(b) => b,
            Err(e) => return Answer::Failed(unreachable(KIND, &e)),
        };
        let reset = reset_unix(&headers, "ratelimit-reset");
        if status.as_u16() == 429 {
            return Answer::Failed(self.gate.throttled(reset));
        }
        self.gate
            .observe(header_number(&headers, "ratelimit-remaining"), reset);
        if status.is_success() {
            return Answer::Ok(body);
        }
        let error: XrpcError = serde_json::from_str(&body).unwrap_or_default();
        if matches!(error.error.as_str(), "ExpiredToken" | "InvalidToken") {
            return Answer::Session;
        }
        let detail = if error.error.is_empty() {
            excerpt(&body)
        } else {
            format!("{}: {}", error.error, error.message)
        };
        let reason = format!("bluesky {what} answered {status}: {detail}");
        Answer::Failed(match status.as_u16() {
            400 => SendError::Reject { reason },
            _ => SendError::Retry {
                after: None,
                reason,
            },
        })
    }

    /// The current session, logging in when there is none.
    async fn session(&self) -> Result<Session, SendError> {
        let mut held = self.session.lock().await;
        if let Some(s) = held.as_ref() {
            return Ok(s.clone());
        }
        let s = self.create_session().await?;
        *held = Some(s.clone());
        Ok(s)
    }

    async fn create_session(&self) -> Result<Session, SendError> {
        self.gate.check()?;
        let resp = self
            .http
            .post(self.url("com.atproto.server.createSession"))
            .json(&json!({"identifier": self.identifier, "password": self.password.expose()}))
            .send()
            .await
            .map_err(|e| unreachable(KIND, &e))?;
        let status = resp.status();
        match self.answer(resp, "createSession").await {
            Answer::Ok(body) => parse_session(&body),
            // Refused credentials pause the channel, so that once they are fixed the post still
            // goes.
            Answer::Failed(SendError::Reject { reason })
            | Answer::Failed(SendError::Retry { reason, .. })
                if status.as_u16() == 401 || status.as_u16() == 400 =>
            {
                Err(SendError::Credentials {
                    reason: format!(
                        "{reason} (check channels.bluesky.identifier and its app password)"
                    ),
                })
            }
            Answer::Failed(e) => Err(e),
            Answer::Session => Err(SendError::Retry {
                after: None,
                reason: "bluesky createSession refused the login".into(),
            }),
        }
    }

    /// Renews the session after `stale` was refused: with the refresh token, or by logging in
    /// again when that is refused too. Another task may have renewed it already.
    async fn renew(&self, stale: &Session) -> Result<Session, SendError> {
        let mut held = self.session.lock().await;
        if let Some(s) = held.as_ref()
            && s.access != stale.access
        {
            return Ok(s.clone());
        }
        let resp = self
            .http
            .post(self.url("com.atproto.server.refreshSession"))
            .bearer_auth(&stale.refresh)
            .send()
            .await
            .map_err(|e| unreachable(KIND, &e))?;
        let renewed = match self.answer(resp, "refreshSession").await {
            Answer::Ok(body) => parse_session(&body)?,
            Answer::Session => {
                tracing::info!(channel = %KIND, "refresh token refused; logging in again");
                self.create_session().await?
            }
            Answer::Failed(e) => return Err(e),
        };
        *held = Some(renewed.clone());
        Ok(renewed)
    }

    /// Sends an authenticated request, renewing the session once if its token is refused.
    async fn authed(
        &self,
        what: &str,
        request: impl Fn(&Session) -> reqwest::RequestBuilder,
    ) -> Result<(Session, String), SendError> {
        let mut session = self.session().await?;
        for _ in 0..2 {
            let resp = request(&session)
                .bearer_auth(&session.access)
                .send()
                .await
                .map_err(|e| unreachable(KIND, &e))?;
            match self.answer(resp, what).await {
                Answer::Ok(body) => return Ok((session, body)),
                Answer::Failed(e) => return Err(e),
                Answer::Session => session = self.renew(&session).await?,
            }
        }
        Err(SendError::Retry {
            after: None,
            reason: format!("bluesky {what}: the renewed session was refused too"),
        })
    }

    /// The account's own recent post with exactly this text and parent, if a lost answer hid it.
    async fn already_posted(
        &self,
        text: &str,
        parent: Option<&Ref>,
    ) -> Result<Option<Ref>, SendError> {
        let (_, body) = self
            .authed("listRecords", |s| {
                self.http
                    .get(self.url("com.atproto.repo.listRecords"))
                    .query(&[
                        ("repo", s.did.as_str()),
                        ("collection", POST),
                        ("limit", &LOOK_BACK.to_string()),
                    ])
            })
            .await?;
        let records: Records = serde_json::from_str(&body).map_err(|e| SendError::Retry {
            after: None,
            reason: format!("bluesky listRecords: unreadable answer ({e})"),
        })?;
        Ok(records.records.into_iter().find_map(|r| {
            let same_text = r.value["text"].as_str() == Some(text);
            let their_parent = r.value["reply"]["parent"]["uri"].as_str();
            let same_parent = their_parent == parent.map(|p| p.uri.as_str());
            (same_text && same_parent).then_some(Ref {
                uri: r.uri,
                cid: r.cid,
            })
        }))
    }
}

fn parse_session(body: &str) -> Result<Session, SendError> {
    serde_json::from_str(body).map_err(|e| SendError::Retry {
        after: None,
        reason: format!("bluesky: unreadable session ({e})"),
    })
}

fn receipt(post: Ref) -> Receipt {
    Receipt {
        provider_id: Some(format!("{} {}", post.uri, post.cid)),
        provider: Some("bluesky".into()),
        segments: None,
    }
}

#[async_trait]
impl Channel for BlueskyChannel {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        self.gate.check()?;
        let earlier: Vec<Ref> = thread(&self.store, KIND, msg)
            .await?
            .iter()
            .filter_map(|id| Ref::parse(id))
            .collect();
        let (root, parent) = (earlier.first(), earlier.last());
        if msg.attempt > 1
            && let Some(post) = self.already_posted(&msg.text, parent).await?
        {
            tracing::info!(channel = %KIND, delivery = msg.delivery_id, uri = %post.uri,
                "the post of an earlier attempt was made; keeping it");
            return Ok(receipt(post));
        }
        let mut record = json!({
            "$type": POST,
            "text": msg.text,
            "createdAt": Timestamp::now().to_string(),
            "langs": [self.language],
        });
        let facets = facets(&msg.text);
        if !facets.is_empty() {
            record["facets"] = Value::Array(facets);
        }
        if let (Some(root), Some(parent)) = (root, parent) {
            record["reply"] = json!({"root": root.json(), "parent": parent.json()});
        }
        let (_, body) = self
            .authed("createRecord", |s| {
                self.http
                    .post(self.url("com.atproto.repo.createRecord"))
                    .json(&json!({"repo": s.did, "collection": POST, "record": record}))
            })
            .await?;
        let created: Created = serde_json::from_str(&body).map_err(|e| SendError::Retry {
            after: None,
            reason: format!(
                "bluesky createRecord: unreadable answer ({e}): {}",
                excerpt(&body)
            ),
        })?;
        Ok(receipt(Ref {
            uri: created.uri,
            cid: created.cid,
        }))
    }
}

/// Bluesky in the registry: the region's account, posting approved statements as threads.
pub struct Spec;

impl crate::settings::ChannelSection for Spec {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn form(&self) -> crate::render::Form {
        crate::render::Form::Post
    }

    fn validate(
        &self,
        s: &crate::settings::Settings,
        keys: &mut crate::settings::ChannelKeys,
        mut push: &mut dyn FnMut(&str, String),
    ) {
        if let Some(k) = settings::validate(s, &mut push) {
            keys.insert(KIND, k);
        }
    }

    fn subscribers(
        &self,
        s: &crate::settings::Settings,
    ) -> Vec<crate::domain::subscriber::ValidSubscriber> {
        settings::subscribers(s)
    }
}

impl crate::channel::ChannelSpec for Spec {
    fn build(
        &self,
        v: &crate::settings::Validated,
        wiring: &crate::channel::Wiring<'_>,
    ) -> Result<Option<crate::channel::Built>, crate::channel::BuildError> {
        let c = &v.settings.channels.bluesky;
        let (true, Some(keys)) = (c.enabled, v.channels.get::<Secret>(KIND)) else {
            return Ok(None);
        };
        let channel = BlueskyChannel::new(
            c,
            keys.clone(),
            v.settings.routing.default_language.as_str(),
            wiring.store.clone(),
        )
        .map_err(crate::channel::BuildError)?;
        // One post at a time per account, so that each update finds the post before it.
        Ok(Some(crate::channel::Built::one_at_a_time(Arc::new(
            channel,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use unicode_segmentation::UnicodeSegmentation;

    use super::*;

    #[test]
    fn facets_point_at_utf8_bytes() {
        let text = "È giù il CUP 🚨 dalle 10: https://stato.example.it/status/incidents/42\nPoi https://b.example";
        let found = facets(text);
        assert_eq!(found.len(), 2);
        for f in &found {
            let start = f["index"]["byteStart"].as_u64().unwrap() as usize;
            let end = f["index"]["byteEnd"].as_u64().unwrap() as usize;
            let uri = f["features"][0]["uri"].as_str().unwrap();
            assert_eq!(&text.as_bytes()[start..end], uri.as_bytes());
        }
        // Counting characters instead of bytes would start 5 earlier (È, ù one each, 🚨 three).
        let chars_before = text.chars().take_while(|c| *c != 'h').count();
        assert_eq!(found[0]["index"]["byteStart"], chars_before + 5);
    }

    #[test]
    fn provider_ids_carry_uri_and_cid() {
        let r = Ref::parse("at://did:plc:x/app.bsky.feed.post/3k bafyabc").unwrap();
        assert_eq!(r.uri, "at://did:plc:x/app.bsky.feed.post/3k");
        assert_eq!(r.cid, "bafyabc");
        assert_eq!(Ref::parse("no-cid"), None);
    }

    #[test]
    fn hashtags_become_tag_facets_without_their_hash() {
        let text = "Disservizio #SanitàUmbria, #CUP. #123 x#no (#no) #🦋 ＃Salute #tag_1-a!? fine";
        let found = facets(text);
        let tags: Vec<(&str, &str)> = found
            .iter()
            .map(|f| {
                let start = f["index"]["byteStart"].as_u64().unwrap() as usize;
                let end = f["index"]["byteEnd"].as_u64().unwrap() as usize;
                assert_eq!(f["features"][0]["$type"], "app.bsky.richtext.facet#tag");
                (&text[start..end], f["features"][0]["tag"].as_str().unwrap())
            })
            .collect();
        assert_eq!(
            tags,
            [
                ("#SanitàUmbria", "SanitàUmbria"),
                ("#CUP", "CUP"),
                ("#🦋", "🦋"),
                ("＃Salute", "Salute"),
                ("#tag_1-a", "tag_1-a"),
            ]
        );
        // Longer than the lexicon's 64 graphemes: plain text.
        assert!(facets(&format!("#{}", "a".repeat(65))).is_empty());
        assert_eq!(facets(&format!("#{}", "è".repeat(64))).len(), 1);
    }

    proptest! {
        #[test]
        fn facets_cover_whole_links_and_tags_on_char_boundaries(text in crate::hostile::text()) {
            let punctuation_last = regex::Regex::new(r"\p{P}$").unwrap();
            let mut end_of_last = 0;
            for facet in facets(&text) {
                let start = facet["index"]["byteStart"].as_u64().unwrap_or(u64::MAX) as usize;
                let end = facet["index"]["byteEnd"].as_u64().unwrap_or(0) as usize;
                prop_assert!(end_of_last <= start && start < end && end <= text.len());
                prop_assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
                end_of_last = end;
                let covered = &text[start..end];
                let feature = &facet["features"][0];
                match feature["$type"].as_str() {
                    Some(LINK) => {
                        prop_assert_eq!(feature["uri"].as_str(), Some(covered));
                        prop_assert!(covered.starts_with("http"), "{covered:?}");
                        prop_assert!(!covered.contains(char::is_whitespace), "{covered:?}");
                        prop_assert!(!covered.ends_with(['.', ',', '!', '?', ':']), "{covered:?}");
                        prop_assert!(!covered.ends_with(')') || covered.contains('('));
                    }
                    Some(TAG) => {
                        let tag = feature["tag"].as_str().unwrap_or_default();
                        let hash = covered.strip_suffix(tag);
                        prop_assert!(matches!(hash, Some("#" | "＃")), "{covered:?} {tag:?}");
                        prop_assert!(!tag.starts_with('#') && !tag.is_empty());
                        prop_assert!(tag.graphemes(true).count() <= 64 && tag.len() <= 640);
                        prop_assert!(!punctuation_last.is_match(tag), "{tag:?}");
                    }
                    other => prop_assert!(false, "unexpected feature {other:?}"),
                }
            }
        }
    }
}
