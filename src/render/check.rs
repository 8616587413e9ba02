//! What `check-config` asks of the templates: every channel, language and kind of update
//! rendered against a sample incident, every probe finding, every bot answer, console page,
//! status page and citizen's message against samples of what the code gives them, so that a
//! broken override is found before an incident needs it.

use std::collections::BTreeMap;

use super::env::{Form, template_name};
use super::{Renderer, sample_context, social};
use crate::domain::subscriber::Language;
use crate::domain::{Finding, UpdateKind};

impl Renderer {
    /// Renders every channel, language and update kind against a sample incident and returns
    /// what failed. `check-config` reports these.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (&channel, &form) in &self.forms {
            let langs = self.languages(channel);
            if langs.is_empty() {
                problems.push(format!(
                    "{channel}: no complete template folder ({} needed)",
                    form.parts().join(", ")
                ));
            }
            if self.language_for(channel, &self.fallback).is_none() {
                problems.push(format!(
                    "{channel}: no templates for the fallback language `{}`",
                    self.fallback
                ));
            }
            for lang in langs {
                let Ok(language) = Language::try_from(lang.clone()) else {
                    problems.push(format!(
                        "{channel}/{lang}: folder name is not a language tag"
                    ));
                    continue;
                };
                // The same fault usually shows for every kind of update: report it once.
                let mut faults: BTreeMap<String, Vec<&str>> = BTreeMap::new();
                for kind in [
                    UpdateKind::Opened,
                    UpdateKind::Updated,
                    UpdateKind::Resolved,
                ] {
                    match self.render(channel, &language, &sample_context(kind)) {
                        Ok(r) if r.text.trim().is_empty() => faults
                            .entry(format!("{channel}/{lang}: the text part renders empty"))
                            .or_default()
                            .push(kind.as_str()),
                        Ok(_) => {}
                        Err(e) => faults.entry(e.to_string()).or_default().push(kind.as_str()),
                    }
                }
                for (fault, kinds) in faults {
                    problems.push(format!(
                        "{fault} (rendering the sample {} update)",
                        kinds.join("/")
                    ));
                }
                // Every kind of probe finding, each alone so that none is dropped for length.
                let mut faults: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for finding in Finding::samples() {
                    let mut ctx = sample_context(UpdateKind::Opened);
                    ctx.signals.truncate(1);
                    let kind = serde_json::to_value(&finding)
                        .ok()
                        .and_then(|v| v["kind"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    ctx.signals[0].finding = Some(finding);
                    if let Err(e) = self.render(channel, &language, &ctx) {
                        faults.entry(e.to_string()).or_default().push(kind);
                    }
                }
                for (fault, kinds) in faults {
                    problems.push(format!(
                        "{fault} (rendering a probe's {} finding)",
                        kinds.join("/")
                    ));
                }
                if form == Form::Sms {
                    // The public audience's text also carries the preferences link, an affected
                    // list's its longest detail.
                    for (kind, audience) in [
                        (UpdateKind::Opened, None),
                        (UpdateKind::Resolved, None),
                        (UpdateKind::Opened, Some("public")),
                        (UpdateKind::Resolved, Some("public")),
                        (UpdateKind::Opened, Some(super::AFFECTED)),
                        (UpdateKind::Resolved, Some(super::AFFECTED)),
                    ] {
                        let mut ctx = sample_context(kind);
                        ctx.signals.clear();
                        if let Some(audience) = audience {
                            ctx.audience = audience.into();
                            ctx.ack_url = None;
                        }
                        if audience == Some(super::AFFECTED) {
                            ctx.detail = Some(super::DETAIL);
                        }
                        if let Ok(sms) = self.render_sms(&lang, &ctx)
                            && !sms.fits_without_cutting
                        {
                            problems.push(format!(
                                "{}: even without signals the sample {} text for the {} audience is longer than max_segments = {} and would be cut",
                                template_name(channel, &lang, "text"),
                                kind.as_str(),
                                ctx.audience,
                                sms.max_segments
                            ));
                        }
                    }
                }
                if form == Form::Post {
                    // A long update body is cut to fit; the plain update must fit whole.
                    for kind in [UpdateKind::Opened, UpdateKind::Resolved] {
                        let mut ctx = sample_context(kind);
                        ctx.signals.clear();
                        if let Ok(post) = self.render_post(channel, &lang, &ctx)
                            && !post.fits_without_cutting
                        {
                            problems.push(format!(
                                "{}: even without signals the sample {} post is longer than {} {} and would be cut",
                                template_name(channel, &lang, "post"),
                                kind.as_str(),
                                post.max_length,
                                social::Limits::unit(channel),
                            ));
                        }
                    }
                }
                if form == Form::AppIo {
                    // App IO's subject shows in notifications: no personal data in it.
                    let ctx = sample_context(UpdateKind::Opened);
                    if let Ok(out) = self.render(channel, &language, &ctx)
                        && out.subject.as_deref().is_some_and(|s| {
                            s.contains(super::placeholders::RECIPIENT_NAME)
                                || s.contains(super::placeholders::MANAGE_URL)
                                || s.contains(super::placeholders::UNSUBSCRIBE_URL)
                        })
                    {
                        problems.push(format!(
                            "{}: App IO's subject must carry no personal data: leave recipient_name and the links out of it",
                            template_name(channel, &lang, "subject")
                        ));
                    }
                }
                if form == Form::Telegram {
                    for (name, args) in bot_samples() {
                        if let Err(e) = self.bot_text(&language, name, &args) {
                            problems.push(e.to_string());
                        }
                    }
                }
            }
        }
        for lang in ["it", "en"] {
            let user = minijinja::context! {
                name => "m.rossi", roles => vec!["communicator"], drafts => true,
                incidents => true, subscribers => true, admin => true,
            };
            // Every page with the banner of a paused channel.
            let paused = vec![minijinja::context! {
                channel => "Telegram", since => "2023-07-19T08:14:00Z",
                reason => "Telegram refuses the bot token <401 Unauthorized>",
                next_probe => "2023-07-19T08:19:00Z",
            }];
            for (name, sample) in console_samples() {
                let ctx = minijinja::context! {
                    lang => lang, user => user.clone(), csrf => "sample", paused => paused.clone(),
                    nonce => "sample",
                    page => minijinja::Value::from(minijinja::value::Serde(sample)),
                };
                if let Err(e) = self.console(name, &ctx) {
                    problems.push(e.to_string());
                }
            }
        }
        for lang in ["it", "en"] {
            for (name, sample) in status_samples() {
                let ctx = minijinja::context! {
                    lang => lang, title => "Stato dei servizi", days => 90, id => 42,
                    ..minijinja::Value::from(minijinja::value::Serde(sample))
                };
                if let Err(e) = self.status_page(name, &ctx) {
                    problems.push(e.to_string());
                }
            }
            // The page a desk's acknowledgement link opens: asking, recorded, already, invalid.
            let ask = serde_json::json!({"found": true, "incident_id": 42, "desk": "CUP Foligno",
                "title": "CUP non raggiungibile", "opened_at": "2023-07-19T09:14:00Z",
                "acked": null, "already": false});
            let acked = serde_json::json!({"at": "2023-07-19T09:16:00Z", "by": "cu•@asl.example",
                "channel": "email"});
            for (done, already) in [(false, false), (true, false), (true, true)] {
                let mut page = ask.clone();
                page["already"] = already.into();
                if done {
                    page["acked"] = acked.clone();
                }
                if let Err(e) = self.page("ack", lang, &page) {
                    problems.push(e.to_string());
                }
            }
            let mut invalid = ask.clone();
            invalid["found"] = false.into();
            if let Err(e) = self.page("ack", lang, &invalid) {
                problems.push(e.to_string());
            }
            let language = Language::try_from(lang.to_owned()).unwrap_or(self.fallback.clone());
            for (name, args) in [
                (
                    "confirm_email",
                    vec![
                        minijinja::Value::from("https://x/status/subscribe/confirm/t"),
                        minijinja::Value::from(vec!["Prenotazioni"]),
                        minijinja::Value::from(24),
                    ],
                ),
                ("code_sms", vec![minijinja::Value::from("123456")]),
            ] {
                if let Err(e) = self.citizen_text(&language, name, &args) {
                    problems.push(e.to_string());
                }
            }
        }
        problems
    }
}

/// Every public status page with a sample of what it is given, for [`Renderer::check`].
fn status_samples() -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    let at = "2023-07-19T09:14:00Z";
    let statement = json!({"at": at, "kind": "opened", "language": "it",
        "title": "Disservizio: Prenotazioni (CUP)", "text": "Prenotazioni sospese."});
    let incident = json!({"id": 42, "state": "major_outage", "resolved": false, "opened_at": at,
        "resolved_at": null, "services": ["cup"], "statements": [statement]});
    let service = json!({"id": "cup", "name": "Prenotazioni", "name_en": "Bookings",
        "state": "major_outage", "uptime_days": 98.9,
        "history": [{"date": "2023-07-19", "state": "major_outage"}]});
    vec![
        (
            "page",
            json!({"subscribe": true, "board": {"generated_at": at, "overall": "major_outage",
                "services": [service], "incidents": [incident.clone()],
                "maintenance": [{"starts_at": at, "ends_at": at, "in_progress": false,
                    "services": ["cup"], "note": "Aggiornamento del CUP.", "note_en": "CUP update."}]}}),
        ),
        ("incident", json!({"incident": incident})),
        ("incident", json!({"incident": null})),
        (
            "subscribe",
            json!({"step": "form", "error": "`x` is not a phone number", "error_field": "address",
                "services": [{"id": "cup", "name": "Prenotazioni", "checked": true}],
                "channels": ["email", "sms", "telegram"], "channel": "email",
                "address": "x", "replaces": ""}),
        ),
        (
            "subscribe",
            json!({"step": "code", "error": null, "token": "t", "attempts_left": 2}),
        ),
        (
            "subscribe",
            json!({"step": "telegram", "error": null, "token": "t", "link": "https://t.me/b?start=t",
                "expires_at": at}),
        ),
        (
            "subscribe",
            json!({"step": "confirm", "error": null, "token": "t", "service_names": ["Prenotazioni"]}),
        ),
        (
            "subscribe",
            json!({"step": "done", "error": null, "manage_url": "https://x/manage/1.s"}),
        ),
        ("subscribe", json!({"step": "invalid", "error": null})),
        (
            "manage",
            json!({"found": true, "erased": false, "notice": "ok", "refused": false, "citizen": true,
                "channel": "email", "address": "ma•••@example.org", "stopped": false,
                "erase_days": 30, "language": "it",
                "services": [{"id": "cup", "name": "Prenotazioni", "checked": true}],
                "change_url": "/status/subscribe?replaces=t"}),
        ),
        (
            "manage",
            json!({"found": true, "erased": false, "notice": "no", "refused": true, "citizen": false,
                "channel": "sms", "address": "•••567", "stopped": true, "erase_days": 30,
                "language": "it", "services": [], "change_url": ""}),
        ),
        ("manage", json!({"found": false})),
    ]
}

/// Every console page with a sample of what it is given, for [`Renderer::check`].
fn console_samples() -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    let at = "2023-07-19T09:14:00Z";
    let part = json!({"channel": "email", "language": "it", "state": "pending", "version": 2,
        "subject": "CUP", "body": "Il servizio <è> sospeso.", "recipients": 3});
    let draft = json!({"id": 3, "incident_id": 42, "incident_title": "CUP non raggiungibile",
        "update_seq": 1, "update_kind": "opened", "audience": "public", "policy": "approval",
        "state": "pending", "publish_at": at, "combined": true, "created_at": at,
        "decided_at": null, "decided_by": null, "reason": null, "parts": [part.clone()]});
    let incident = json!({"id": 42, "title": "CUP non raggiungibile", "status": "investigating",
        "severity": "critical", "opened_at": at, "resolved_at": null});
    let signal = json!({"status": "firing", "service": "cup-backend", "component": "db",
        "summary": "CUP non risponde", "severity": "critical", "finding": null});
    let probed = json!({"status": "firing", "service": "cup", "component": null,
        "summary": "Portale CUP", "severity": "critical",
        "finding": {"kind": "http_status", "status": 503, "expected": ["2xx"]}});
    let entry = json!({"id": 1, "at": at, "actor": "m.rossi", "action": "draft.edited",
        "incident_id": 42, "draft_id": 3, "detail": {"diff": "-a\n+b", "channels": ["email"]}});
    let update = json!({"seq": 1, "kind": "opened", "status": "investigating", "body": "In verifica",
        "author": "m.rossi", "created_at": at});
    let subscriber = json!({"id": 1, "name": "CUP Foligno", "audience": "cup-desk", "language": "it",
        "origin": "api", "created_at": at,
        "addresses": [{"channel": "email", "address": "cup@asl.example", "state": "active", "gone_reason": null}],
        "subscriptions": [{"matchers": ["service=~\"cup.*\""], "min_severity": "warning", "channels": []}],
        "escalation": [{"after": "0s", "channels": ["email", "telegram"]}, {"after": "5m", "channels": ["sms"]}]});
    vec![
        (
            "login",
            json!({"login_token": "t", "problem": {"blocked_minutes": 3, "blocked_seconds": 180}}),
        ),
        (
            "login",
            json!({"login_token": "t", "problem": {"blocked_minutes": 1, "blocked_seconds": 29}}),
        ),
        ("login", json!({"login_token": "t", "problem": "busy"})),
        ("error", json!({"status": 403, "message": "no"})),
        (
            "drafts",
            json!({"pending": [draft.clone()], "recent": [draft.clone()]}),
        ),
        (
            "draft",
            json!({"draft": draft, "incident": incident.clone(), "signals": [signal.clone(), probed.clone()],
            "audit": [entry.clone()],
            "parts": [{"part": part, "key": "email_it", "length": {"unit": "characters", "used": 20, "limit": 20000}}],
            "counting": {"gsm_basic": "@£$", "gsm_extension": "€", "gsm7": [160, 153], "ucs2": [70, 67],
                "mastodon_url": 23, "x_url": 23}}),
        ),
        ("incidents", json!({"incidents": [incident.clone()]})),
        (
            "incident",
            json!({"incident": {"id": 43, "title": "CUP", "status": "investigating",
                "severity": "critical", "opened_at": at, "resolved_at": null,
                "maintenance": "Aggiornamento CUP"},
            "updates": [], "signals": [], "summary": {}, "deliveries": []}),
        ),
        (
            "incident",
            json!({"incident": incident, "updates": [update], "signals": [signal, probed],
            "summary": {"email": {"sent": 3}}, "deliveries": []}),
        ),
        (
            "acks",
            json!({"title": "CUP non raggiungibile", "board": {"incident_id": 42,
                "desks_total": 2, "desks_acknowledged": 1, "desks": [
                {"subscriber_id": 1, "name": "CUP <Foligno>", "acknowledged": null,
                 "next_escalation": null, "messages": [{"delivery_id": 1, "update_seq": 1,
                 "channel": "sms", "recipient": "+393331234567", "state": "sent",
                 "delivered": false, "report_status": "undelivered", "sent_at": at}]},
                {"subscriber_id": 2, "name": "CUP Terni", "next_escalation": null,
                 "acknowledged": {"at": at, "channel": "email", "recipient": "cup@asl.example"},
                 "messages": [{"delivery_id": 2, "update_seq": 1, "channel": "email",
                 "recipient": "cup@asl.example", "state": "sent", "delivered": null,
                 "report_status": null, "sent_at": null}]}]}}),
        ),
        (
            "acks",
            json!({"title": "CUP", "board": {"incident_id": 42, "desks_total": 0,
            "desks_acknowledged": 0, "desks": []}}),
        ),
        ("audit", json!({"entries": [entry]})),
        (
            "heartbeats",
            json!({"heartbeats": [
                {"name": "backup-cup", "origin": "config", "service": "cup", "state": "late", "since": at,
                 "last_ping_at": at, "late_at": null, "pings": 3, "severity": "critical",
                 "detail": ""},
                {"name": "cron", "origin": "api", "defined_by": "m.rossi", "service": "cup", "state": "new", "since": at,
                 "last_ping_at": null, "late_at": at, "pings": 0, "severity": "warning",
                 "detail": "exit 1"}]}),
        ),
        ("heartbeats", json!({"heartbeats": []})),
        (
            "subscribers",
            json!({"subscribers": [subscriber.clone()], "citizens": 1250, "total": 1, "q": "",
                "next": "/console/subscribers?after=1", "previous": null}),
        ),
        (
            "subscribers",
            json!({"subscribers": [], "citizens": 0, "total": 0, "q": "cup",
                "next": null, "previous": "/console/subscribers?q=cup&before=9"}),
        ),
        (
            "subscriber",
            json!({"subscriber": subscriber.clone(), "channels": ["email", "sms", "telegram"],
                "addresses": {"email": "cup@asl.example", "sms": "", "telegram": ""},
                "deliveries": [{"id": 7, "incident_id": 42, "incident_title": "CUP", "update_seq": 1,
                    "channel": "email", "recipient": "cup@asl.example", "state": "sent",
                    "created_at": at, "sent_at": at, "last_error": null}]}),
        ),
        (
            "subscriber",
            json!({"subscriber": {"id": 2, "name": "Ufficio", "audience": "comms", "language": "it",
                "origin": "config", "created_at": at, "addresses": [{"channel": "email",
                "address": "u@asl.example", "state": "gone", "gone_reason": "5.1.1"}],
                "subscriptions": [{"matchers": [], "min_severity": "info", "channels": ["email"]}],
                "escalation": []},
                "channels": ["email", "sms", "telegram"],
                "addresses": {"email": "u@asl.example", "sms": "", "telegram": ""},
                "deliveries": []}),
        ),
        (
            "me",
            json!({"linked": false, "link": {"url": "https://t.me/b?start=u_1_2_x", "command": "/start u_1_2_x"}}),
        ),
        (
            "users",
            json!({"users": [{"username": "m.rossi", "roles": ["admin"], "disabled": false, "telegram_linked": true},
                {"username": "l.bianchi", "roles": ["viewer"], "disabled": true, "telegram_linked": false}],
                "roles": ["admin", "communicator", "operator", "viewer"]}),
        ),
        (
            "tokens",
            json!({"tokens": [{"name": "alertmanager", "roles": ["ingest"], "origin": "config",
                "created_at": null, "created_by": null, "last_used_at": null, "revoked_at": null, "revoked_by": null},
                {"name": "grafana", "roles": ["ingest"], "origin": "store", "created_at": at,
                "created_by": "m.rossi", "last_used_at": at, "revoked_at": at, "revoked_by": "m.rossi"}],
                "roles": ["ingest", "viewer", "operator", "communicator", "admin"], "reload_seconds": 5}),
        ),
        (
            "token_created",
            json!({"created": {"name": "grafana", "roles": ["ingest"], "token": "bnd_x"}}),
        ),
    ]
}

/// Every macro the Telegram bot calls, with sample arguments, for [`Renderer::check`].
fn bot_samples() -> Vec<(&'static str, Vec<minijinja::Value>)> {
    use minijinja::Value;
    let name = || Value::from("CUP Foligno <sportello 2>");
    let list = || Value::from(vec!["cup-backend", "portale-referti"]);
    let incident = minijinja::context! {
        id => 42, title => "CUP backend non raggiungibile", status => "investigating",
        severity => "critical", opened_at => "2023-07-19T09:14:00Z", services => vec!["cup-backend"],
    };
    let at = || Value::from("2023-07-19T09:16:00Z");
    vec![
        ("ack_recorded", vec![]),
        ("ack_already", vec![Value::from("email"), at()]),
        ("ack_not_valid", vec![]),
        ("ack_seen", vec![name(), at()]),
        ("ack_seen_before", vec![Value::from("sms"), at()]),
        (
            "channel_paused",
            vec![
                Value::from("Telegram"),
                Value::from("401 Unauthorized <check the token>"),
                Value::from("banditore-1"),
            ],
        ),
        (
            "channel_resumed",
            vec![Value::from("Telegram"), Value::from("banditore-1")],
        ),
        (
            "whatsapp_limit",
            vec![Value::from(250), at(), Value::from("banditore-1")],
        ),
        ("help", vec![]),
        ("not_registered", vec![]),
        ("bound", vec![name()]),
        ("already_active", vec![name()]),
        ("bound_elsewhere", vec![name()]),
        ("invite_expired", vec![]),
        ("invite_used", vec![]),
        ("invite_unknown", vec![]),
        ("status", vec![Value::from(vec![incident]), Value::from(3)]),
        (
            "status",
            vec![Value::from(Vec::<Value>::new()), Value::from(0)],
        ),
        ("subscribe_usage", vec![list()]),
        ("subscribed", vec![Value::from("cup-backend")]),
        ("unsubscribe_usage", vec![list(), list()]),
        ("unsubscribed", vec![Value::from("cup-backend")]),
        ("bad_service", vec![Value::from("<cup>")]),
        ("stopped", vec![]),
        ("resumed", vec![name()]),
        ("language_usage", vec![Value::from(vec!["en", "it"])]),
        ("language_set", vec![]),
        ("unknown_command", vec![]),
        ("trouble", vec![]),
        (
            "draft_waiting",
            vec![
                Value::from(minijinja::value::Serde(serde_json::json!({
                    "id": 3, "incident_title": "CUP <backend> non raggiungibile", "audience": "public",
                    "publish_at": "2023-07-19T09:34:00Z",
                    "parts": [{"channel": "email", "body": "Il servizio è sospeso."}],
                }))),
                Value::from("https://banditore.example/console/drafts/3"),
            ],
        ),
        ("draft_button_approve", vec![]),
        ("draft_button_open", vec![]),
        ("draft_approved", vec![Value::from(3), name()]),
        (
            "draft_decided",
            vec![Value::from(3), Value::from("approved")],
        ),
        ("draft_not_allowed", vec![]),
        ("draft_button_reject", vec![]),
        ("draft_reason_prompt", vec![Value::from(3)]),
        ("draft_rejected", vec![Value::from(3), name()]),
        ("user_linked", vec![]),
        ("user_link_private", vec![]),
    ]
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;
    use crate::render::sms;
    use crate::render::testing::renderer;

    #[test]
    fn built_in_templates_pass_the_check() {
        assert_eq!(renderer().check(), Vec::<String>::new());
    }

    /// A renderer over a folder holding only `template` (a path under the templates' folder)
    /// written as `text`; the folder lives as long as the renderer is used.
    fn with_only(template: &str, text: &str) -> (tempfile::TempDir, Renderer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(template);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        let it = Language::try_from("it".to_owned()).unwrap();
        let r = Renderer::new(dir.path(), &it, TimeZone::UTC, &crate::channel::forms()).unwrap();
        (dir, r)
    }

    #[test]
    fn broken_template_is_reported_with_its_name_and_line() {
        let (_dir, r) = with_only("email/en/text.j2", "line one\n{{ incident.nosuchfield }}\n");
        let problems = r.check();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("email/en/text.j2 line 2")),
            "{problems:?}"
        );
    }

    #[test]
    fn check_reports_an_sms_template_that_cannot_fit() {
        let (_dir, r) = with_only(
            "sms/it/text.j2",
            &format!(
                "{{% set max_segments = 1 %}}{{{{ incident.title }}}} {}",
                "x".repeat(200)
            ),
        );
        let problems = r.check();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("sms/it/text.j2") && p.contains("max_segments = 1")),
            "{problems:#?}"
        );
        // At run time it is cut to fit, never sent over.
        let out = r
            .render_sms("it", &sample_context(UpdateKind::Opened))
            .unwrap();
        assert_eq!(sms::measure(&out.text).segments, 1);
        assert!(!out.fits_without_cutting);
    }

    #[test]
    fn check_reports_an_app_io_subject_naming_the_recipient() {
        let (_dir, r) = with_only("appio/it/subject.j2", "Avviso per {{ recipient_name }}");
        let problems = r.check();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("appio/it/subject.j2") && p.contains("no personal data")),
            "{problems:#?}"
        );
    }

    #[test]
    fn check_renders_every_console_page_and_reports_a_broken_one() {
        assert!(renderer().check().is_empty(), "{:#?}", renderer().check());
        let (_dir, r) = with_only(
            "web/console/drafts.html.j2",
            "{{ page.pending[0].no_such_field.x }}",
        );
        let problems = r.check();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("web/console/drafts.html.j2")),
            "{problems:#?}"
        );
    }
}
