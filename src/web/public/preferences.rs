//! `GET/POST /manage/{token}`: a citizen's preferences, linked from every message they receive
//! (services, language, channel), and the buttons that stop the messages or erase the contact.
//! Plain HTML forms like the sign-up's, with the same helpers; the token is the only credential.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use super::signup::{Form, all, field, lang, posted_form, query, render, service_choices, step};
use crate::citizen::Citizens;
use crate::domain::subscriber::Language;
use crate::store::SubscriberOrigin;
use crate::web::AppState;
use crate::web::extract::Path;
use crate::web::service::incidents::masked;

async fn manage_page(state: &AppState, token: &str, lang: &str, form: Option<&Form>) -> Response {
    let c = &*state.citizens;
    let not_found = || {
        render(
            state,
            StatusCode::NOT_FOUND,
            "manage",
            lang,
            minijinja::context! { found => false, here => "" },
        )
    };
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "preferences page: store unavailable");
        step(state, StatusCode::SERVICE_UNAVAILABLE, lang, "unavailable")
    };
    let (address_id, subscriber) = match c.manage(token).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(&e),
    };
    let Some(address) = subscriber
        .addresses
        .iter()
        .find(|a| a.id == address_id)
        .cloned()
    else {
        return not_found();
    };
    let citizen = subscriber.origin == SubscriberOrigin::Citizen;
    let mut notice = None;
    let mut status = StatusCode::OK;
    if let Some(f) = form {
        let words = |it: &str, en: &str| {
            if lang == "en" {
                en.to_owned()
            } else {
                it.to_owned()
            }
        };
        let done = match field(f, "action") {
            "stop" => state
                .store
                .unsubscribe_address(address_id, Timestamp::now())
                .await
                .map(|_| {
                    words(
                        "Non riceverai più avvisi.",
                        "You will receive no more alerts.",
                    )
                }),
            "resume" if citizen => state
                .store
                .set_address_stopped(address_id, false, Timestamp::now())
                .await
                .map(|_| words("Gli avvisi riprendono.", "Alerts resume.")),
            "erase" if citizen && field(f, "confirm") != "yes" => {
                status = StatusCode::BAD_REQUEST;
                Ok(words(
                    "Per cancellare i tuoi dati spunta la conferma.",
                    "To delete your data, tick the confirmation.",
                ))
            }
            "erase" if citizen => match state.store.erase_address(address_id).await {
                Ok(_) => {
                    tracing::info!(address = address_id, "citizen erased their contact");
                    metrics::counter!("banditore_citizens_erased_total").increment(1);
                    return render(
                        state,
                        StatusCode::OK,
                        "manage",
                        lang,
                        minijinja::context! { found => true, erased => true, here => "" },
                    );
                }
                Err(e) => Err(e),
            },
            "save" if citizen => match c.chosen(&all(f, "services")) {
                Err(_) => {
                    status = StatusCode::BAD_REQUEST;
                    Ok(words(
                        "Scegli almeno un servizio, o non ricevere più avvisi.",
                        "Choose at least one service, or stop all alerts.",
                    ))
                }
                Ok(services) => {
                    let language = Language::try_from(field(f, "language").to_owned())
                        .ok()
                        .filter(|l| matches!(l.primary(), "it" | "en"))
                        .unwrap_or(subscriber.language.clone());
                    let plan = c.plan(&services, address.channel, language);
                    state
                        .store
                        .set_citizen(subscriber.id, &plan)
                        .await
                        .map(|_| words("Preferenze salvate.", "Preferences saved."))
                }
            },
            other => {
                status = StatusCode::BAD_REQUEST;
                Ok(format!("`{other}`?"))
            }
        };
        match done {
            Ok(text) => notice = Some(text),
            Err(e) => return unavailable(&e),
        }
        tracing::info!(
            address = address_id,
            action = field(f, "action"),
            "preferences changed"
        );
        // Read back what is stored now.
        return Box::pin(manage_after(state, token, lang, status, notice)).await;
    }
    show_manage(
        state,
        c,
        token,
        lang,
        status,
        notice,
        address_id,
        &subscriber,
    )
}

async fn manage_after(
    state: &AppState,
    token: &str,
    lang: &str,
    status: StatusCode,
    notice: Option<String>,
) -> Response {
    let c = &*state.citizens;
    match c.manage(token).await {
        Ok(Some((address_id, subscriber))) => show_manage(
            state,
            c,
            token,
            lang,
            status,
            notice,
            address_id,
            &subscriber,
        ),
        Ok(None) => render(
            state,
            StatusCode::OK,
            "manage",
            lang,
            minijinja::context! { found => true, erased => true, here => "" },
        ),
        Err(e) => {
            tracing::warn!(error = %e, "preferences page: store unavailable");
            step(state, StatusCode::SERVICE_UNAVAILABLE, lang, "unavailable")
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn show_manage(
    state: &AppState,
    c: &Citizens,
    token: &str,
    lang: &str,
    status: StatusCode,
    notice: Option<String>,
    address_id: i64,
    subscriber: &crate::store::SubscriberRow,
) -> Response {
    let Some(address) = subscriber.addresses.iter().find(|a| a.id == address_id) else {
        return render(
            state,
            StatusCode::NOT_FOUND,
            "manage",
            lang,
            minijinja::context! { found => false, here => "" },
        );
    };
    let citizen = subscriber.origin == SubscriberOrigin::Citizen;
    let mut change = url::form_urlencoded::Serializer::new(String::new());
    change
        .append_pair("lang", lang)
        .append_pair("replaces", token);
    for s in &subscriber.citizen_services {
        change.append_pair("services", s);
    }
    render(
        state,
        status,
        "manage",
        lang,
        minijinja::context! {
            found => true,
            erased => false,
            here => format!("/manage/{token}"),
            notice => notice,
            refused => status != StatusCode::OK,
            citizen => citizen,
            channel => address.channel.as_str(),
            address => masked(address.channel, &address.address),
            stopped => !address.is_active(),
            erase_days => c.settings().erase_after.get().as_secs() / 86_400,
            language => subscriber.language.primary(),
            services => service_choices(c, lang, &subscriber.citizen_services),
            change_url => format!("/status/subscribe?{}", change.finish()),
        },
    )
}

/// `GET /manage/{token}`.
pub async fn manage(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let lang = lang(&state, &headers, &query(raw));
    manage_page(&state, &token, &lang, None).await
}

/// `POST /manage/{token}`.
pub async fn manage_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    body: Body,
) -> Response {
    let Some(f) = posted_form(&headers, body).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
    };
    let lang = lang(&state, &headers, &f);
    manage_page(&state, &token, &lang, Some(&f)).await
}
