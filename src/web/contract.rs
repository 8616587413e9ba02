//! The API contract: one OpenAPI 3.1 document describing every endpoint under `/api/v1/` and the
//! operations endpoints, generated from the code so that it cannot say something the code does
//! not. Each handler carries a `#[utoipa::path]` (its method, path, parameters, body and every
//! status it answers), the types it reads and answers derive `ToSchema`, and the routers are
//! `OpenApiRouter`s whose `routes!` take a handler's path from that annotation: a route in the
//! contract cannot be added without its description. The document is built once, served at
//! `GET /api/v1/openapi.json` without credentials (it describes, it holds nothing secret), and
//! kept in the repository as `docs/openapi.json` (a test compares the two).
//!
//! The errors every endpoint shares are named responses here (`BadRequest`, `Unauthorized`…),
//! all with the one error body of `error.rs`; [`document`] adds to every operation the answers
//! the layers around the handlers may give whatever the handler (`500`, `503`; `408` and `413`
//! where a body is read).

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, Ref, RefOr, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;

use super::error::ErrorBody;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Banditore",
        description = "Incident notification broadcaster: monitors' signals in, incidents out to \
            every subscribed desk, public statements after the communications office approves \
            them. Every error answer has the body `ErrorBody`. Roles: `ingest` posts signals; \
            `viewer` reads; `operator` reads, writes incidents and manages subscribers; \
            `communicator` reads, writes incidents and decides on public drafts; `admin` does \
            everything. Credentials are checked before the path or the query is read, so a \
            caller without them gets 401 whatever the URL.",
        license(name = "EUPL-1.2", identifier = "EUPL-1.2"),
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            RequestTimeout,
            PayloadTooLarge,
            UnsupportedMediaType,
            Internal,
            Unavailable
        )
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "signals", description = "What monitors post: webhooks turned into signals"),
        (name = "incidents", description = "Incidents, their updates and their deliveries"),
        (name = "subscribers", description = "Who is told, where, about what"),
        (name = "drafts", description = "Public statements held for the communications office, and the audit log"),
        (name = "probes", description = "Probes, silences and maintenance windows"),
        (name = "heartbeats", description = "Monitors' pings and failure reports, and each heartbeat's state"),
        (name = "access", description = "API tokens and console users, for admins"),
        (name = "public", description = "What anyone may read, without credentials"),
        (name = "callbacks", description = "What providers post back about messages sent"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct Contract;

/// The security schemes an operation may name.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`[[auth.tokens]]`), as `Authorization: Bearer <token>`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "HTTP basic authentication whose password is an API token (the user \
                         name is not read), for senders that can only do basic auth.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Grafana-Alerting-Signature",
                "An HMAC-SHA256 of the body, hex-encoded, in the header an `[[auth.hmac]]` \
                 entry names (its `header`, with its `prefix`; with `timestamp_header`, the \
                 signed text is `<timestamp>:<body>` and the timestamp must be fresh). A \
                 signature proves the ingest role only.",
            ))),
        );
        components.add_security_scheme(
            "genie_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "Opsgenie's scheme, `Authorization: GenieKey <token>`, whose key is an API \
                 token with the ingest role.",
            ))),
        );
        components.add_security_scheme(
            "hub_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Hub-Signature-256",
                "Meta's signature of a webhook: `sha256=` and the hex HMAC-SHA256 of the raw body \
                 with the app's secret (`channels.whatsapp.app_secret`).",
            ))),
        );
        components.add_security_scheme(
            "twilio_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Twilio-Signature",
                "Twilio's signature of the callback URL and its parameters.",
            ))),
        );
    }
}

/// A named error response with the shared body, and the headers it carries.
macro_rules! error_response {
    ($name:ident, $description:literal $(, $header:literal => $header_doc:literal)*) => {
        #[doc = $description]
        pub struct $name;

        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                #[allow(unused_mut)]
                let mut response = ResponseBuilder::new().description($description).content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                );
                $(
                    response = response.header(
                        $header,
                        HeaderBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                            .description(Some($header_doc))
                            .build(),
                    );
                )*
                (stringify!($name), response.build().into())
            }
        }
    };
}

error_response!(
    BadRequest,
    "The request is malformed or a value is refused; `field` names the field when one is at fault."
);
error_response!(
    Unauthorized,
    "No valid credentials.",
    "WWW-Authenticate" => "The schemes accepted: Bearer and Basic."
);
error_response!(
    Forbidden,
    "Valid credentials, none of whose roles allows this."
);
error_response!(NotFound, "No such thing (or no such endpoint).");
error_response!(
    Conflict,
    "The request contradicts the present state (e.g. a feature that is not enabled, a draft already decided)."
);
error_response!(
    RequestTimeout,
    "The body was still arriving when `server.request_timeout` ran out; the connection ends.",
    "Connection" => "`close`."
);
error_response!(
    PayloadTooLarge,
    "The body is larger than `server.max_body_bytes`; the connection ends.",
    "Connection" => "`close`."
);
error_response!(
    UnsupportedMediaType,
    "The body's content type is not one this endpoint reads."
);
error_response!(Internal, "A fault of the server; the detail is in its log.");
error_response!(
    Unavailable,
    "The store is unavailable, or the answer did not come within `server.request_timeout`; try again.",
    "Retry-After" => "Seconds to wait before trying again."
);

/// The answers the layers around every handler may give, added to each operation that does not
/// already name them: a panic (`500`), the deadline or the store (`503`), and where a body is
/// read, a slow one (`408`) or a large one (`413`).
fn add_shared_responses(operation: &mut Operation) {
    let mut add = |status: &str, name: &str| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    };
    add("500", "Internal");
    add("503", "Unavailable");
    if operation.request_body.is_some() {
        add("408", "RequestTimeout");
        add("413", "PayloadTooLarge");
    }
}

/// Builds the document from the routers of the contract (`super::contract_routes`).
pub fn document() -> OpenApi {
    let (guarded, open) = super::contract_routes();
    let mut openapi = OpenApiRouter::with_openapi(Contract::openapi())
        .merge(guarded)
        .merge(open)
        .into_openapi();
    for item in openapi.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            add_shared_responses(operation);
        }
    }
    openapi
}

/// The document as served, built on first use: pretty JSON with a final newline, as in
/// `docs/openapi.json`.
static JSON: LazyLock<Result<bytes::Bytes, String>> = LazyLock::new(|| {
    document()
        .to_pretty_json()
        .map(|text| bytes::Bytes::from(text + "\n"))
        .map_err(|e| e.to_string())
});

/// The document as `docs/openapi.json` holds it.
pub fn json() -> Result<bytes::Bytes, String> {
    JSON.clone()
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.",
            content_type = "application/json", body = Object),
    )
)]
pub async fn openapi_json() -> Response {
    match json() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            super::ApiError::Internal(format!("cannot write the API document: {e}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is the document as served; `BANDITORE_BLESS=1` writes it anew.
    #[test]
    fn the_repository_copy_is_the_document_served() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let served = json().expect("the document serializes");
        if std::env::var_os("BANDITORE_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &served).expect("write docs/openapi.json");
            return;
        }
        let kept = std::fs::read(&path).unwrap_or_default();
        assert!(
            kept == served,
            "docs/openapi.json differs from the document the code generates: run \
             `BANDITORE_BLESS=1 cargo test --lib contract` and commit the file"
        );
    }

    #[test]
    fn every_operation_is_described_and_every_error_names_the_shared_body() {
        let doc = document();
        assert!(!doc.paths.paths.is_empty());
        for (path, item) in &doc.paths.paths {
            for operation in [&item.get, &item.put, &item.post, &item.delete, &item.patch]
                .into_iter()
                .flatten()
            {
                assert!(
                    operation.summary.is_some() || operation.description.is_some(),
                    "{path}: an operation without a summary"
                );
                assert!(
                    operation.responses.responses.contains_key("503"),
                    "{path}: the shared responses were not added"
                );
            }
        }
    }
}
