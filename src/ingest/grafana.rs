//! Grafana unified alerting's webhook contact point (`"version": "1"`): Alertmanager's shape plus
//! Grafana's own fields.

use serde_json::Value;

use super::alertmanager::parse_alert;
use super::json::{Obj, url};
use super::{IngestError, Parsed};

pub fn parse(value: &Value) -> Result<Parsed, IngestError> {
    let root = Obj::root(value, "").map_err(|_| custom_template_hint())?;
    let Some(alerts) = root.array("alerts")? else {
        return Err(custom_template_hint());
    };
    if is_test(&root, alerts) {
        return Ok(Parsed {
            signals: Vec::new(),
            notes: vec!["Grafana test notification: accepted, no incident opened".into()],
        });
    }
    let mut parsed = Parsed::default();
    for (i, alert) in alerts.iter().enumerate() {
        let path = format!("alerts[{i}]");
        let obj = Obj::root(alert, &path)?;
        let mut signal = parse_alert(obj)?;
        // The most useful link for a desk is the dashboard panel, then the dashboard, then the rule.
        let link = url(obj.str("panelURL")?)
            .or(url(obj.str("dashboardURL")?))
            .or(signal.url.take());
        signal.url = link;
        if let Some(values) = obj.str("valueString")? {
            signal.annotations.entry("value".into()).or_insert(values);
        }
        parsed.signals.push(signal);
    }
    Ok(parsed)
}

/// The contact point's "Test" button: receiver `test`, group key `test-<fp>-<time>`.
fn is_test(root: &Obj<'_>, alerts: &[Value]) -> bool {
    let group_key_test = root
        .get("groupKey")
        .and_then(Value::as_str)
        .is_some_and(|k| k.starts_with("test-"));
    let test_alert = alerts.iter().all(|a| {
        a.get("labels")
            .and_then(|l| l.get("alertname"))
            .and_then(Value::as_str)
            == Some("TestAlert")
    });
    group_key_test && test_alert
}

fn custom_template_hint() -> IngestError {
    IngestError::field(
        "alerts",
        "missing: this is not Grafana's webhook body (a custom payload template replaces it; remove the template, or post to /api/v1/signals/generic in Banditore's generic format)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SignalStatus;
    use crate::ingest::json::decode;

    fn fixture(name: &str) -> Result<Parsed, IngestError> {
        let path = format!(
            "{}/tests/fixtures/ingest/grafana/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        parse(&decode(&std::fs::read(path).unwrap()).unwrap())
    }

    #[test]
    fn firing_prefers_panel_then_dashboard_and_fixes_schemeless_urls() {
        let p = fixture("firing.json").unwrap();
        assert_eq!(p.signals.len(), 1);
        let s = &p.signals[0];
        assert_eq!(s.status, Some(SignalStatus::Firing));
        // Panel and dashboard URLs are empty here, so the rule link is used, with a scheme.
        assert!(
            s.url
                .as_deref()
                .unwrap()
                .starts_with("http://localhost:3000/"),
            "{:?}",
            s.url
        );
        assert!(s.annotations.contains_key("value"));
        assert_eq!(
            s.labels.get("service").map(String::as_str),
            Some("cup-portal")
        );
    }

    #[test]
    fn resolved_and_old_value_string() {
        let r = fixture("resolved.json").unwrap();
        assert_eq!(r.signals[0].status, Some(SignalStatus::Resolved));
        let old = fixture("old-valuestring-only.json").unwrap();
        assert!(old.signals[0].annotations.contains_key("value"));
        assert!(
            old.signals[0]
                .url
                .as_deref()
                .unwrap()
                .starts_with("https://")
        );
    }

    #[test]
    fn test_button_opens_nothing() {
        let t = fixture("test-notification.json").unwrap();
        assert!(t.signals.is_empty());
        assert_eq!(t.notes.len(), 1);
    }

    #[test]
    fn custom_template_body_gets_a_clear_error() {
        let err = parse(&serde_json::json!({"text": "CUP down"})).unwrap_err();
        assert!(err.message.contains("custom payload template"));
        let err = parse(&serde_json::json!("CUP down")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("alerts"));
    }
}
