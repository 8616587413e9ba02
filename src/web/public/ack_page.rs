//! `/ack/{token}`: the link in a desk's email, where the desk says it has seen the incident.
//!
//! `GET` shows the incident (its number, title and when it opened), the desk and one button
//! (or who at the desk already confirmed, and when); it records nothing, because mail scanners
//! and link previews follow links. `POST` (the button) records the desk's acknowledgement
//! through [`Acknowledgements::by_token`] and says when, or, when someone at the desk had
//! already said so, who, through what and when. The token is the
//! only credential: signed for one address and one incident, so a forged, tampered or
//! other-incident token answers `404` on both methods and records nothing.
//!
//! The `POST` needs no cookie and no form token. A cross-site form can only post a token its
//! author already holds, and the holder of a desk's token may acknowledge for that desk anyway:
//! cross-site request forgery gains nothing here. The token is never logged: the trace layer
//! (`web/mod.rs`) names the route, `/ack/{token}`, never the path.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;

use super::unsubscribe_page::html;
use crate::ack::Acknowledgements;
use crate::domain::subscriber::Language;
use crate::render::Renderer;
use crate::store::{AckRow, Acknowledged, Store, StoreError};
use crate::web::AppState;
use crate::web::body::read;
use crate::web::extract::Path;
use crate::web::service::incidents::masked;

/// What the page shows.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Page {
    /// Whether the token is valid for an incident that exists.
    pub found: bool,
    pub incident_id: i64,
    pub title: String,
    /// RFC 3339, for the templates' `localtime`.
    pub opened_at: String,
    pub desk: String,
    /// Set once the desk's acknowledgement stands: recorded now (`already` false) or earlier.
    pub acked: Option<Acked>,
    pub already: bool,
}

/// The acknowledgement that stands, as the page tells it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Acked {
    pub at: String,
    /// The address it came from, masked: the page may be seen by anyone holding the link.
    pub by: String,
    pub channel: String,
}

impl From<&AckRow> for Acked {
    fn from(a: &AckRow) -> Acked {
        Acked {
            at: a.acked_at.to_string(),
            by: masked(a.channel, &a.recipient),
            channel: a.channel.as_str().to_owned(),
        }
    }
}

/// The page for `token`, acknowledging when `act` (a `POST`), and its language: the status
/// code is `404` unless the token names an incident and an address that exist and the
/// acknowledgement, when asked for, was taken.
pub(crate) async fn answer(
    acks: &Acknowledgements,
    store: &dyn Store,
    fallback: &Language,
    token: &str,
    act: Option<Timestamp>,
) -> Result<(StatusCode, Page, Language), StoreError> {
    let missing = || (StatusCode::NOT_FOUND, Page::default(), fallback.clone());
    let Some(target) = acks.check(token).await? else {
        return Ok(missing());
    };
    let (Some(incident), Some(owner)) = (
        store.incident(target.incident_id).await?,
        store.address(target.address_id).await?,
    ) else {
        return Ok(missing());
    };
    let language = owner.address.language.clone().unwrap_or(owner.language);
    let mut page = Page {
        found: true,
        incident_id: incident.id,
        title: incident.title,
        opened_at: incident.opened_at.to_string(),
        desk: owner.subscriber_name,
        acked: None,
        already: false,
    };
    let Some(now) = act else {
        // Someone at the desk may have confirmed already: the page says so, and asks nothing.
        let stands = store.acknowledgements(incident.id).await?;
        if let Some(a) = stands
            .iter()
            .find(|a| a.subscriber_id == Some(owner.subscriber_id))
        {
            page.acked = Some(Acked::from(a));
            page.already = true;
        }
        return Ok((StatusCode::OK, page, language));
    };
    match acks.by_token(token, now).await? {
        Acknowledged::Recorded(a) => page.acked = Some(Acked::from(&a)),
        Acknowledged::Already(a) => {
            page.acked = Some(Acked::from(&a));
            page.already = true;
        }
        // Signed for this address, but it was never sent a desk's message about the incident.
        Acknowledged::NotSent => return Ok(missing()),
    }
    Ok((StatusCode::OK, page, language))
}

fn respond(
    renderer: &Renderer,
    outcome: Result<(StatusCode, Page, Language), StoreError>,
) -> Response {
    let (status, page, language) = match outcome {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "acknowledgement page: store unavailable");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable, try again",
            )
                .into_response();
        }
    };
    match renderer.page("ack", language.primary(), &page) {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "acknowledgement page template failed");
            let text = match (&page.acked, status) {
                (_, StatusCode::NOT_FOUND) => "invalid link",
                (Some(_), _) => "acknowledged",
                (None, _) => "confirm with POST",
            };
            (status, text).into_response()
        }
    }
}

pub async fn show(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let outcome = answer(
        &state.acks(),
        state.store.as_ref(),
        &state.default_language,
        &token,
        None,
    )
    .await;
    respond(&state.renderer, outcome)
}

pub async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The page's form posts nothing that is needed; the body is read only to bound its size.
    if read(&headers, body, 64 * 1024).await.is_err() {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    }
    let outcome = answer(
        &state.acks(),
        state.store.as_ref(),
        &state.default_language,
        &token,
        Some(Timestamp::now()),
    )
    .await;
    respond(&state.renderer, outcome)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::subscriber::{ChannelKind, SubscriberRules, SubscriberSpec};
    use crate::domain::{IncidentStatus, Labels, Severity, UpdateKind};
    use crate::store::{IncidentOrigin, NewDelivery, NewIncident, NewMessage, NewUpdate};
    use crate::unsubscribe::UnsubscribeLinks;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn it() -> Language {
        Language::try_from("it".to_owned()).unwrap()
    }

    /// A desk sent an incident by email: the store, the acknowledgements, the desk's token.
    async fn desk_told(dir: &tempfile::TempDir) -> (Arc<dyn Store>, Acknowledgements, String) {
        let store = crate::store::scratch(dir).await;
        let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
            "name": "CUP Foligno", "language": "en",
            "addresses": {"email": ["cup@asl.example"]}, "subscriptions": [{}]
        }))
        .unwrap();
        let valid = spec.validate(&SubscriberRules::new(it())).unwrap();
        let desk = store.create_subscriber(&valid, at(0)).await.unwrap();
        let address = store.subscriber(desk).await.unwrap().unwrap().addresses[0].id;
        let mut tx = store.begin().await.unwrap();
        let incident = tx
            .insert_incident(&NewIncident {
                group_key: "service=cup".into(),
                title: "CUP <non> raggiungibile".into(),
                status: IncidentStatus::Investigating,
                severity: Severity::Major,
                origin: IncidentOrigin::Manual,
                labels: Labels::new(),
                opened_at: at(0),
                eval_at: None,
                pending_since: None,
            })
            .await
            .unwrap();
        let update = tx
            .insert_update(&NewUpdate {
                incident_id: incident.id,
                seq: 1,
                title: incident.title.clone(),
                signals: Vec::new(),
                kind: UpdateKind::Opened,
                status: IncidentStatus::Investigating,
                severity: Severity::Major,
                body: None,
                author: None,
                created_at: at(0),
                origin_at: at(0),
                silent: false,
            })
            .await
            .unwrap();
        let message = tx
            .insert_message(&NewMessage {
                update_id: update.id,
                channel: ChannelKind::Email,
                language: "en".into(),
                audience: "internal".into(),
                subject: None,
                body: "CUP".into(),
                html: None,
                created_at: at(0),
            })
            .await
            .unwrap()
            .id;
        tx.insert_deliveries(&[NewDelivery {
            message_id: message,
            update_id: update.id,
            incident_id: incident.id,
            address_id: address,
            subscriber_name: "CUP Foligno".into(),
            channel: ChannelKind::Email,
            recipient: "cup@asl.example".into(),
            origin_at: at(0),
            created_at: at(0),
        }])
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let links = UnsubscribeLinks::new(b"a key for the tests", "https://b.example");
        let token = links.ack_token(incident.id, address, ChannelKind::Email, "cup@asl.example");
        (store.clone(), Acknowledgements::new(store, links), token)
    }

    #[tokio::test]
    async fn a_get_shows_the_button_and_a_post_records_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, acks, token) = desk_told(&dir).await;
        let (status, page, language) = answer(&acks, store.as_ref(), &it(), &token, None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(language.primary(), "en", "the desk's language");
        assert_eq!(page.desk, "CUP Foligno");
        assert_eq!(page.title, "CUP <non> raggiungibile");
        assert_eq!(page.acked, None);
        assert!(
            store
                .acknowledgements(page.incident_id)
                .await
                .unwrap()
                .is_empty()
        );

        let (_, first, _) = answer(&acks, store.as_ref(), &it(), &token, Some(at(60)))
            .await
            .unwrap();
        let acked = first.acked.as_ref().unwrap();
        assert!(!first.already);
        assert_eq!(acked.at, at(60).to_string());
        assert_eq!(acked.by, "cu•@asl.example");
        let (status, seen, _) = answer(&acks, store.as_ref(), &it(), &token, None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(
            seen.already,
            "a GET after tells who confirmed, and records nothing"
        );
        assert_eq!(seen.acked.as_ref().unwrap().at, at(60).to_string());
        let (_, second, _) = answer(&acks, store.as_ref(), &it(), &token, Some(at(90)))
            .await
            .unwrap();
        assert!(second.already);
        assert_eq!(
            second.acked.as_ref().unwrap().at,
            at(60).to_string(),
            "the first stands"
        );
        assert_eq!(
            store
                .acknowledgements(first.incident_id)
                .await
                .unwrap()
                .len(),
            1
        );

        // The page in each language, with the incident's title escaped.
        let r = Renderer::new(
            std::path::Path::new(""),
            &it(),
            jiff::tz::TimeZone::UTC,
            &crate::channel::forms(),
        )
        .unwrap();
        for (p, lang) in [(&first, "it"), (&second, "en"), (&Page::default(), "it")] {
            let body = r.page("ack", lang, p).unwrap();
            assert!(!body.contains("<non>"), "{body}");
        }
    }

    #[tokio::test]
    async fn a_token_edited_anywhere_is_not_found_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, acks, token) = desk_told(&dir).await;
        let (incident, rest) = token.split_once('.').unwrap();
        let other_incident = format!("{}.{rest}", incident.parse::<i64>().unwrap() + 1);
        let mut edited = vec![
            other_incident,
            format!("{token}A"),
            token[..token.len() - 1].into(),
        ];
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            edited.push(String::from_utf8(bytes).unwrap());
        }
        for bad in edited.iter().filter(|b| **b != token) {
            for act in [None, Some(at(5))] {
                let (status, page, _) = answer(&acks, store.as_ref(), &it(), bad, act)
                    .await
                    .unwrap();
                assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
                assert!(!page.found);
            }
        }
        assert!(store.acknowledgements(1).await.unwrap().is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_hostile_token_is_not_found(
            token in prop_oneof![
                crate::hostile::text(),
                "[0-9]{1,20}\\.[0-9]{1,20}\\.[A-Za-z0-9_-]{0,40}",
                Just("../../etc/passwd".to_owned()),
                Just("1.1.".to_owned() + &"A".repeat(100_000)),
            ]
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let (store, acks, _) = desk_told(&dir).await;
                for act in [None, Some(at(5))] {
                    let (status, page, _) =
                        answer(&acks, store.as_ref(), &it(), &token, act).await.unwrap();
                    assert_eq!(status, StatusCode::NOT_FOUND);
                    assert_eq!(page, Page::default());
                }
                assert!(store.acknowledgements(1).await.unwrap().is_empty());
            });
        }
    }
}
