//! The people whose appointments an incident affects, as a booking system lists them: one row
//! per person, naming them by codice fiscale, mobile number and/or email address, with the
//! language they read and a one-line `detail` (the appointment's time and place) that their
//! messages carry. A row is checked field by field ([`check`]); a problem is named without
//! repeating what the row holds, since these are people's data. Which channel reaches a row is
//! a pure choice over the row and the channels enabled ([`choose`]): App IO when the row has a
//! fiscal code and App IO is enabled, else SMS when it has a mobile, else email. A row is known
//! by a keyed digest of who it names ([`identity`]), so that the same person uploaded twice is
//! found again without the store reading their contacts.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::fiscal_code::FiscalCode;
use super::subscriber::{ChannelKind, Language, SubscriberRules};
use super::text::one_line;

/// The longest detail, in characters: one line that fits beside an SMS's statement.
pub const MAX_DETAIL_CHARS: usize = 120;

/// The columns a row may have, in CSV's header and as JSON fields.
pub const COLUMNS: [&str; 5] = ["fiscal_code", "mobile", "email", "language", "detail"];

/// A row as uploaded: every field as written, absent or empty alike.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRow {
    #[serde(default)]
    pub fiscal_code: Option<String>,
    #[serde(default)]
    pub mobile: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

impl RawRow {
    /// Sets the field of CSV's column `name` (one of [`COLUMNS`]).
    pub fn set(&mut self, name: &str, value: String) {
        let field = match name {
            "fiscal_code" => &mut self.fiscal_code,
            "mobile" => &mut self.mobile,
            "email" => &mut self.email,
            "language" => &mut self.language,
            _ => &mut self.detail,
        };
        *field = Some(value);
    }
}

/// A row checked: at least one way to reach the person, each in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub fiscal_code: Option<FiscalCode>,
    /// E.164.
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub language: Language,
    /// Empty when the row has none.
    pub detail: String,
}

/// Why a row was refused: the field and the rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the row is empty")]
    Empty,
    #[error("names nobody: give a fiscal_code, a mobile or an email")]
    NoContact,
    #[error("fiscal_code: {0}")]
    FiscalCode(#[from] super::fiscal_code::FiscalCodeError),
    #[error("mobile: not a mobile number that can receive SMS")]
    Mobile,
    #[error("email: not a valid email address")]
    Email,
    #[error("language: not a language tag (`it`, `en`)")]
    Language,
    #[error("detail: {0}")]
    Detail(String),
    #[error("only a fiscal_code, and App IO is not enabled: give a mobile or an email")]
    AppIoNotEnabled,
    #[error("no enabled channel reaches it: {0}")]
    NoChannel(&'static str),
}

fn given(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Checks a row field by field. `rules` reads numbers as SMS reads them (numbers without a
/// country code are in the deployment's region); a row without a language reads `rules`'s.
pub fn check(raw: &RawRow, rules: &SubscriberRules) -> Result<Row, Problem> {
    let (cf, mobile, email) = (
        given(&raw.fiscal_code),
        given(&raw.mobile),
        given(&raw.email),
    );
    if cf.is_none()
        && mobile.is_none()
        && email.is_none()
        && given(&raw.language).is_none()
        && given(&raw.detail).is_none()
    {
        return Err(Problem::Empty);
    }
    if cf.is_none() && mobile.is_none() && email.is_none() {
        return Err(Problem::NoContact);
    }
    let fiscal_code = cf.map(FiscalCode::parse).transpose()?;
    let mobile = mobile
        .map(|m| {
            ChannelKind::Sms
                .parse_address(m, rules)
                .map_err(|_| Problem::Mobile)
        })
        .transpose()?;
    let email = email
        .map(|e| {
            ChannelKind::Email
                .parse_address(e, rules)
                .map_err(|_| Problem::Email)
        })
        .transpose()?;
    let language = match given(&raw.language) {
        None => rules.default_language.clone(),
        Some(l) => Language::try_from(l.to_owned()).map_err(|_| Problem::Language)?,
    };
    let detail = raw.detail.as_deref().map(str::trim).unwrap_or_default();
    one_line(detail).map_err(|e| Problem::Detail(e.to_string()))?;
    let chars = detail.chars().count();
    if chars > MAX_DETAIL_CHARS {
        return Err(Problem::Detail(format!(
            "{chars} characters, more than {MAX_DETAIL_CHARS}"
        )));
    }
    Ok(Row {
        fiscal_code,
        mobile,
        email,
        language,
        detail: detail.to_owned(),
    })
}

/// How a row is reached, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    AppIo,
    Sms,
    Email,
}

impl Via {
    /// The channel that carries it. The one place a `Via` becomes a channel; a way whose
    /// channel is off is not among [`Via::enabled`], and a row reached only by it is refused at
    /// upload ([`Problem::AppIoNotEnabled`] for a row with only a fiscal code).
    pub fn channel(self) -> ChannelKind {
        match self {
            Via::AppIo => ChannelKind::AppIo,
            Via::Sms => ChannelKind::Sms,
            Via::Email => ChannelKind::Email,
        }
    }

    /// The ways out among the enabled channels.
    pub fn enabled(channels: &std::collections::BTreeSet<ChannelKind>) -> Vec<Via> {
        [Via::AppIo, Via::Sms, Via::Email]
            .into_iter()
            .filter(|v| channels.contains(&v.channel()))
            .collect()
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Via::AppIo => "appio",
            Via::Sms => "sms",
            Via::Email => "email",
        })
    }
}

/// Where a row goes: the way and the address on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub via: Via,
    /// The fiscal code for App IO, the E.164 number for SMS, the email address.
    pub address: String,
}

/// The best way the row allows among the `enabled` ones: App IO for a fiscal code, else SMS
/// for a mobile, else email.
pub fn choose(row: &Row, enabled: &[Via]) -> Result<Reach, Problem> {
    let on = |v: Via| enabled.contains(&v);
    if let Some(cf) = &row.fiscal_code
        && on(Via::AppIo)
    {
        return Ok(Reach {
            via: Via::AppIo,
            address: cf.as_str().to_owned(),
        });
    }
    if let Some(m) = &row.mobile
        && on(Via::Sms)
    {
        return Ok(Reach {
            via: Via::Sms,
            address: m.clone(),
        });
    }
    if let Some(e) = &row.email
        && on(Via::Email)
    {
        return Ok(Reach {
            via: Via::Email,
            address: e.clone(),
        });
    }
    Err(match (&row.fiscal_code, &row.mobile, &row.email) {
        (Some(_), None, None) => Problem::AppIoNotEnabled,
        (_, Some(_), None) => Problem::NoChannel("SMS is not enabled and the row has no email"),
        (_, None, Some(_)) => Problem::NoChannel("email is not enabled"),
        _ => Problem::NoChannel("neither SMS nor email is enabled"),
    })
}

/// The row's identity under the deployment's `key`: a keyed digest of its fiscal code, mobile
/// and email (as read), the same for the same person written alike, and nothing a reader of
/// the store can reverse.
pub fn identity(row: &Row, key: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"banditore affected row v1\0");
    for part in [
        row.fiscal_code.as_ref().map(FiscalCode::as_str),
        row.mobile.as_deref(),
        row.email.as_deref().map(str::to_lowercase).as_deref(),
    ] {
        mac.update(part.unwrap_or("").as_bytes());
        mac.update(b"\0");
    }
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules() -> SubscriberRules {
        SubscriberRules::new(Language::try_from("it".to_owned()).expect("it"))
    }

    fn raw(cf: &str, mobile: &str, email: &str, detail: &str) -> RawRow {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        RawRow {
            fiscal_code: opt(cf),
            mobile: opt(mobile),
            email: opt(email),
            language: None,
            detail: opt(detail),
        }
    }

    const CF: &str = "RSSMRA85T10A562S";

    #[test]
    fn rows_are_checked_field_by_field_without_repeating_them() {
        let ok = check(&raw(CF, "347 123 4567", "", "ore 11:30, Foligno"), &rules()).unwrap();
        assert_eq!(ok.mobile.as_deref(), Some("+393471234567"));
        assert_eq!(ok.language.as_str(), "it");
        assert_eq!(ok.detail, "ore 11:30, Foligno");
        for (row, problem) in [
            (raw("", "", "", ""), Problem::Empty),
            (raw("", "", "", "solo dettaglio"), Problem::NoContact),
            (raw("", "0742 123456", "", ""), Problem::Mobile),
            (raw("", "", "not an address", ""), Problem::Email),
        ] {
            let got = check(&row, &rules()).unwrap_err();
            assert_eq!(got, problem);
            assert!(!got.to_string().contains("0742") && !got.to_string().contains("not an"));
        }
        let wrong_check = check(&raw("RSSMRA85T10A562T", "", "", ""), &rules()).unwrap_err();
        assert!(matches!(wrong_check, Problem::FiscalCode(_)));
        assert!(!wrong_check.to_string().contains("RSSMRA"));
        let two_lines = check(&raw("", "", "a@b.it", "ore 11\n30"), &rules()).unwrap_err();
        assert!(matches!(two_lines, Problem::Detail(_)));
        let long = "x".repeat(MAX_DETAIL_CHARS + 1);
        assert!(matches!(
            check(&raw("", "", "a@b.it", &long), &rules()),
            Err(Problem::Detail(_))
        ));
    }

    #[test]
    fn the_best_way_the_row_and_the_channels_allow() {
        let row = check(&raw(CF, "3471234567", "m.rossi@example.org", ""), &rules()).unwrap();
        let all = [Via::AppIo, Via::Sms, Via::Email];
        assert_eq!(choose(&row, &all).unwrap().via, Via::AppIo);
        assert_eq!(choose(&row, &[Via::Sms, Via::Email]).unwrap().via, Via::Sms);
        assert_eq!(choose(&row, &[Via::Email]).unwrap().via, Via::Email);
        let only_cf = check(&raw(CF, "", "", ""), &rules()).unwrap();
        assert_eq!(
            choose(&only_cf, &[Via::Sms, Via::Email]).unwrap_err(),
            Problem::AppIoNotEnabled
        );
        assert_eq!(choose(&only_cf, &all).unwrap().address, CF);
        // App IO turned off: not among the enabled ways; turned on, the first of them.
        let mut channels: std::collections::BTreeSet<ChannelKind> =
            [ChannelKind::Sms, ChannelKind::Email, ChannelKind::Telegram]
                .into_iter()
                .collect();
        assert_eq!(Via::enabled(&channels), vec![Via::Sms, Via::Email]);
        channels.insert(ChannelKind::AppIo);
        assert_eq!(
            Via::enabled(&channels),
            vec![Via::AppIo, Via::Sms, Via::Email]
        );
    }

    #[test]
    fn the_identity_is_keyed_and_ignores_how_it_was_written() {
        let a = check(
            &raw(CF, "347 123 4567", "M.Rossi@Example.org", "a"),
            &rules(),
        )
        .unwrap();
        let b = check(
            &raw(
                &CF.to_lowercase(),
                "+39 347-1234567",
                "m.rossi@example.org",
                "b",
            ),
            &rules(),
        )
        .unwrap();
        assert_eq!(identity(&a, b"k"), identity(&b, b"k"));
        assert_ne!(identity(&a, b"k"), identity(&a, b"another key"));
    }

    proptest! {
        #[test]
        fn any_text_is_checked_without_a_panic(
            cf in crate::hostile::text(), mobile in crate::hostile::text(),
            email in crate::hostile::text(), language in crate::hostile::text(),
            detail in crate::hostile::text(),
        ) {
            let row = RawRow {
                fiscal_code: Some(cf), mobile: Some(mobile), email: Some(email),
                language: Some(language), detail: Some(detail),
            };
            if let Ok(row) = check(&row, &rules()) {
                prop_assert!(one_line(&row.detail).is_ok());
                prop_assert!(row.detail.chars().count() <= MAX_DETAIL_CHARS);
                let _ = choose(&row, &[Via::Sms, Via::Email]);
            }
        }
    }
}
