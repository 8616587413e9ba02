//! `/api/v1/incidents/{id}/acknowledgements` (who knows: every desk sent the incident, its
//! messages and its acknowledgement) and `/api/v1/incidents/{id}/ledger` (every message of the
//! incident, one row each, as JSON or CSV, for audits).
//!
//! The ledger is streamed a page of the store at a time, so ten thousand rows never sit in one
//! string. Every read of it is written to the audit log: it is the evidence a health authority
//! keeps for its service charter and NIS2 reports, and it may hold citizens' contacts. Who sees
//! whole addresses is the deliveries' rule: desks' addresses everyone who may read incidents;
//! citizens' contacts and webhooks' URLs administrators only, masked for everyone else.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::subscriber::ChannelKind;
use crate::settings::Permission;
use crate::store::{LEDGER_PAGE, LedgerRow, Store};
use crate::web::contract::{BadRequest, Forbidden, NotFound, Unauthorized};
use crate::web::error::ApiError;
use crate::web::extract::{Path, Query};
use crate::web::service::acks::{AckBoard, delivered, shown};
use crate::web::service::incidents::masked;
use crate::web::{AppState, record_audit, require};

/// Which desks know: every desk sent a message about the incident, those that have not
/// acknowledged it first.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}/acknowledgements",
    tag = "incidents",
    params(("id" = i64, Path, description = "The incident's id.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The desks and their acknowledgements.", body = AckBoard),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn board(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<AckBoard>, ApiError> {
    let reader = require(&state, &headers, Permission::Read)?;
    Ok(Json(
        crate::web::service::acks::board(&state, id, &reader).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// `json` (the default, unless `Accept` asks for `text/csv`) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// An incident's ledger, as JSON.
#[derive(Serialize, ToSchema)]
pub struct LedgerJson {
    incident_id: i64,
    rows: Vec<LedgerRowJson>,
}

/// One message to one recipient, from its writing to the provider's report and the desk's
/// acknowledgement. Drafts' notices to the communications office are not in the ledger.
#[derive(Serialize, ToSchema)]
pub struct LedgerRowJson {
    delivery_id: i64,
    update_seq: i64,
    /// `public`, or the desks' audience.
    audience: String,
    channel: ChannelKind,
    /// Whole for administrators; for everyone else a citizen's contact or a webhook's URL is
    /// masked.
    recipient: String,
    citizen: bool,
    subscriber: String,
    /// pending, sending, sent, failed, gone or cancelled.
    state: String,
    attempts: i64,
    last_error: Option<String>,
    provider: Option<String>,
    provider_message_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// Handed over to the provider.
    #[schema(value_type = Option<String>, format = DateTime)]
    sent_at: Option<Timestamp>,
    report_status: Option<String>,
    /// `true` delivered, `false` not, `null` where the provider said neither.
    delivered: Option<bool>,
    report_error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    report_at: Option<Timestamp>,
    /// When the recipient's desk acknowledged the incident, through any of its addresses.
    #[schema(value_type = Option<String>, format = DateTime)]
    acknowledged_at: Option<Timestamp>,
}

const CSV_HEADER: &str = "delivery_id,update_seq,audience,channel,recipient,citizen,subscriber,\
state,attempts,last_error,provider,provider_message_id,created_at,sent_at,report_status,\
delivered,report_error,report_at,acknowledged_at\r\n";

impl LedgerRowJson {
    fn new(row: LedgerRow, whole: bool) -> LedgerRowJson {
        let mut recipient = shown(row.channel, &row.recipient, whole);
        let mut last_error = row.last_error;
        let mut report_error = row.report_error;
        if row.citizen && !whole {
            recipient = masked(row.channel, &row.recipient);
        }
        // A provider's words may repeat the address.
        if recipient != row.recipient {
            for text in [&mut last_error, &mut report_error].into_iter().flatten() {
                *text = text.replace(&row.recipient, &recipient);
            }
        }
        LedgerRowJson {
            delivery_id: row.delivery_id,
            update_seq: row.update_seq,
            audience: row.audience,
            channel: row.channel,
            recipient,
            citizen: row.citizen,
            subscriber: row.subscriber_name,
            state: row.state,
            attempts: row.attempts,
            last_error,
            provider: row.provider,
            provider_message_id: row.provider_id,
            created_at: row.created_at,
            sent_at: row.sent_at,
            delivered: delivered(row.report_status.as_deref()),
            report_status: row.report_status,
            report_error,
            report_at: row.report_at,
            acknowledged_at: row.acked_at,
        }
    }

    /// One CSV record (RFC 4180), ending in CRLF.
    fn csv(&self, out: &mut String) {
        let time = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
        let cells = [
            self.delivery_id.to_string(),
            self.update_seq.to_string(),
            self.audience.clone(),
            self.channel.as_str().to_owned(),
            self.recipient.clone(),
            self.citizen.to_string(),
            self.subscriber.clone(),
            self.state.clone(),
            self.attempts.to_string(),
            self.last_error.clone().unwrap_or_default(),
            self.provider.clone().unwrap_or_default(),
            self.provider_message_id.clone().unwrap_or_default(),
            self.created_at.to_string(),
            time(self.sent_at),
            self.report_status.clone().unwrap_or_default(),
            self.delivered.map(|d| d.to_string()).unwrap_or_default(),
            self.report_error.clone().unwrap_or_default(),
            time(self.report_at),
            time(self.acknowledged_at),
        ];
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_cell(cell, out);
        }
        out.push_str("\r\n");
    }
}

/// What a spreadsheet may take for the start of a formula (OWASP's list, with ASVS's NUL).
const FORMULA_STARTS: [char; 7] = ['=', '+', '-', '@', '\t', '\r', '\0'];

/// A CSV cell: a spreadsheet would run a cell starting with `=`, `+`, `-`, `@`, a tab, a
/// carriage return or a NUL as a formula, so such a cell gets a leading `'`; a cell holding a
/// comma, a semicolon, a quote or a line break is quoted, its quotes doubled (RFC 4180). The
/// semicolon is quoted too because a spreadsheet set for Italian (and most of Europe) splits a
/// CSV file on `;`: unquoted, `x;=HYPERLINK(…)` in a provider's error would become a cell of its
/// own that starts with `=`.
pub fn csv_cell(cell: &str, out: &mut String) {
    let formula = cell.starts_with(FORMULA_STARTS);
    let quote = cell.contains([',', ';', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in cell.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

/// Every message of an incident, one row each: where it went, through which provider (and the
/// provider's id for it), when it was written, handed over and reported, and when its desk
/// acknowledged the incident. JSON by default; CSV (RFC 4180, UTF-8, a header line, cells that
/// a spreadsheet would run as formulas neutralised) with `?format=csv` or `Accept: text/csv`.
/// Citizens' contacts and webhooks' URLs are whole for administrators only. Every read is
/// written to the audit log.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}/ledger",
    tag = "incidents",
    params(("id" = i64, Path, description = "The incident's id."), LedgerQuery),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The ledger.", content(
            (LedgerJson = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn ledger(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<LedgerQuery>,
) -> Result<Response, ApiError> {
    let reader = require(&state, &headers, Permission::Read)?;
    let csv = match q.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        None => headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("text/csv")),
        Some(other) => {
            return Err(ApiError::field(
                "format",
                format!("`{}`: expected json or csv", other.escape_debug()),
            ));
        }
    };
    if state.store.incident(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("incident {id} not found")));
    }
    let whole = reader.may(Permission::Admin);
    record_audit(
        &state,
        &reader.name,
        "ledger.read",
        Some(id),
        serde_json::json!({ "format": if csv { "csv" } else { "json" }, "whole_addresses": whole }),
    )
    .await;
    let body = Body::from_stream(pages(state.store.clone(), id, whole, csv));
    let mut response = body.into_response();
    let h = response.headers_mut();
    if csv {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!(
            "attachment; filename=\"incident-{id}-ledger.csv\""
        )) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    } else {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Where the ledger's stream stands.
enum Cursor {
    Start,
    After { id: i64, first: bool },
    End,
    Done,
}

/// The ledger's body, one chunk per page of the store. A store failing halfway ends the stream
/// with an error, which cuts the connection: a client never takes a part for the whole.
fn pages(
    store: std::sync::Arc<dyn Store>,
    id: i64,
    whole: bool,
    csv: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, crate::store::StoreError>> {
    futures_util::stream::unfold(Cursor::Start, move |cursor| {
        let store = store.clone();
        async move {
            let (after, first) = match cursor {
                Cursor::Start => {
                    let head = if csv {
                        CSV_HEADER.to_owned()
                    } else {
                        format!("{{\"incident_id\":{id},\"rows\":[")
                    };
                    return Some((Ok(Bytes::from(head)), Cursor::After { id: 0, first: true }));
                }
                Cursor::After { id, first } => (id, first),
                Cursor::End => {
                    let tail = if csv { "" } else { "]}" };
                    return Some((Ok(Bytes::from(tail)), Cursor::Done));
                }
                Cursor::Done => return None,
            };
            let rows = match store.ledger(id, after, LEDGER_PAGE).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, incident = id, "the ledger stopped halfway");
                    return Some((Err(e), Cursor::Done));
                }
            };
            let next = match rows.last() {
                Some(last) if rows.len() == LEDGER_PAGE as usize => Cursor::After {
                    id: last.delivery_id,
                    first: false,
                },
                _ => Cursor::End,
            };
            let mut chunk = String::new();
            for (i, row) in rows.into_iter().enumerate() {
                let line = LedgerRowJson::new(row, whole);
                if csv {
                    line.csv(&mut chunk);
                } else {
                    if !(first && i == 0) {
                        chunk.push(',');
                    }
                    match serde_json::to_string(&line) {
                        Ok(json) => chunk.push_str(&json),
                        Err(e) => {
                            tracing::error!(error = %e, "a ledger row does not serialize");
                            return Some((
                                Err(crate::store::StoreError::Corrupt(e.to_string())),
                                Cursor::Done,
                            ));
                        }
                    }
                }
            }
            Some((Ok(Bytes::from(chunk)), next))
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cell(s: &str) -> String {
        let mut out = String::new();
        csv_cell(s, &mut out);
        out
    }

    #[test]
    fn cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(cell("CUP Foligno"), "CUP Foligno");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("+39333"), "'+39333");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\tx"), "'\tx");
        assert_eq!(cell("\rx"), "\"'\rx\"");
        assert_eq!(cell("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(cell("\0=1+1"), "'\0=1+1");
        assert_eq!(cell(""), "");
    }

    /// A spreadsheet set for Italian splits a CSV file on `;` as well as reading it by RFC
    /// 4180: no cell, split that way, may start a formula.
    #[test]
    fn a_semicolon_cannot_start_a_cell_in_a_spreadsheet_that_splits_on_it() {
        let error = "550 rejected;=SUM(A1:A9)";
        let out = cell(error);
        assert!(out.starts_with('"') && out.ends_with('"'), "{out}");
        // Outside quotes, nothing is split: the cell is one.
        let mut quoted = false;
        for c in out.chars() {
            if c == '"' {
                quoted = !quoted;
            }
            assert!(quoted || c != ';', "{out}");
        }
    }

    fn row(channel: ChannelKind, recipient: &str, citizen: bool) -> LedgerRow {
        LedgerRow {
            delivery_id: 1,
            update_seq: 1,
            audience: if citizen { "public" } else { "internal" }.into(),
            channel,
            recipient: recipient.into(),
            citizen,
            subscriber_name: "CUP Foligno".into(),
            state: "failed".into(),
            attempts: 3,
            last_error: Some(format!("550 no such user {recipient}")),
            provider: Some("smtp".into()),
            provider_id: None,
            created_at: Timestamp::UNIX_EPOCH,
            sent_at: None,
            report_status: Some("undelivered".into()),
            report_error: Some(format!("{recipient} unreachable")),
            report_at: None,
            acked_at: None,
        }
    }

    /// Who sees whole addresses in the ledger: administrators; everyone else sees desks'
    /// addresses whole and citizens' contacts and webhooks' URLs masked, in the errors too.
    #[test]
    fn the_ledger_masks_citizens_and_webhooks_for_all_but_administrators() {
        let citizen = "mario.rossi@example.org";
        let hook = "https://hooks.example/services/T0/B0/secret";
        let desk = "+393331234567";
        for (channel, to, is_citizen, hidden) in [
            (ChannelKind::Email, citizen, true, true),
            (ChannelKind::Webhook, hook, false, true),
            (ChannelKind::Sms, desk, false, false),
        ] {
            let viewer = LedgerRowJson::new(row(channel, to, is_citizen), false);
            let mut csv = String::new();
            viewer.csv(&mut csv);
            let json = serde_json::to_string(&viewer).unwrap();
            for text in [&json, &csv] {
                assert_eq!(text.contains(to), !hidden, "{text}");
            }
            let admin = LedgerRowJson::new(row(channel, to, is_citizen), true);
            assert_eq!(admin.recipient, to);
            assert!(admin.last_error.unwrap().contains(to));
        }
    }

    /// Reads one CSV record back as RFC 4180 says, for the property below.
    fn read_back(record: &str) -> Vec<String> {
        let mut cells = vec![String::new()];
        let mut chars = record.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (false, '"') => quoted = true,
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    cells.last_mut().unwrap().push('"');
                }
                (true, '"') => quoted = false,
                (false, ',') => cells.push(String::new()),
                (_, c) => cells.last_mut().unwrap().push(c),
            }
        }
        cells
    }

    proptest! {
        #[test]
        fn any_text_makes_one_cell_that_reads_back_and_runs_no_formula(
            a in crate::hostile::text(),
            b in crate::hostile::text(),
        ) {
            let mut record = String::new();
            csv_cell(&a, &mut record);
            record.push(',');
            csv_cell(&b, &mut record);
            let cells = read_back(&record);
            prop_assert_eq!(cells.len(), 2);
            for (cell, original) in cells.iter().zip([&a, &b]) {
                prop_assert!(!cell.starts_with(FORMULA_STARTS));
                let expected = if original.starts_with(FORMULA_STARTS) {
                    format!("'{original}")
                } else {
                    original.to_string()
                };
                prop_assert_eq!(cell, &expected);
            }
        }
    }
}
