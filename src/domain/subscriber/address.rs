//! Where a subscriber is reached, read from what people write: a phone number that can receive
//! SMS, or be called (a landline too), stored in E.164, and a Telegram chat (an id or a public channel's `@username`). Email
//! addresses are read by lettre; `ChannelKind::parse_address` chooses among them.

use std::fmt;

use phonenumber::metadata::{Descriptor, Descriptors};

use crate::domain::text::Described;

/// What kind of line a valid number is.
enum Line {
    Mobile,
    Landline,
    /// Toll-free, premium-rate, shared-cost or another service.
    Service,
}

/// A phone number that can receive SMS, in E.164 (`+393331234567`): `+` or the international
/// prefix (`00`) and a country code, or a national number of `region`; its digits grouped by
/// spaces, dots, dashes, slashes or parentheses.
pub(super) fn parse_phone(raw: &str, region: phonenumber::country::Id) -> Result<String, String> {
    match read_phone(raw, region)? {
        (e164, Line::Mobile) => Ok(e164),
        (e164, Line::Landline) => Err(format!(
            "`{raw}` is a landline ({e164}): SMS cannot reach it"
        )),
        (e164, Line::Service) => Err(format!(
            "`{raw}` is not a mobile number ({e164}: toll-free, premium-rate or another service): SMS cannot reach it"
        )),
    }
}

/// A phone number that can be called, read as [`parse_phone`] reads it: a mobile or a
/// landline (a desk's phone).
pub(super) fn parse_callable(
    raw: &str,
    region: phonenumber::country::Id,
) -> Result<String, String> {
    match read_phone(raw, region)? {
        (e164, Line::Mobile | Line::Landline) => Ok(e164),
        (e164, Line::Service) => Err(format!(
            "`{raw}` is neither a mobile nor a landline ({e164}: toll-free, premium-rate or another service): calls are not placed to it"
        )),
    }
}

/// A valid number in E.164, and its kind of line.
fn read_phone(raw: &str, region: phonenumber::country::Id) -> Result<(String, Line), String> {
    if let Some(c) = raw
        .chars()
        .find(|c| !c.is_ascii_digit() && !" .-/()+".contains(*c))
    {
        return Err(format!(
            "contains {}: a phone number is digits grouped by spaces, dots, dashes, slashes or parentheses, with `+` before a country code",
            Described(c)
        ));
    }
    let plus = raw.find('+');
    if plus.is_some_and(|at| {
        raw[at + 1..].contains('+') || raw[..at].contains(|c: char| c.is_ascii_digit())
    }) {
        return Err(format!("`{raw}`: `+` comes once, before the country code"));
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Err(format!("`{raw}` has no digits"));
    }
    // E.164 numbers have at most 15 digits; an international prefix adds up to 3 (US: 011).
    if digits.len() > 18 {
        return Err(format!(
            "has {} digits, more than any phone number",
            digits.len()
        ));
    }
    let written = if plus.is_some() {
        format!("+{digits}")
    } else {
        digits
    };
    let mut number = phonenumber::parse(Some(region), &written)
        .map_err(|e| format!("`{raw}` is not a phone number ({e})"))?;
    // phonenumber 0.3 checks the length of a national number against an empty list (its data
    // gives the general description no possible lengths; libphonenumber derives them when it
    // builds its own), so it takes any national number that begins with the region's country
    // code for one written with the code but without `+`, and drops those digits: Italy's 39x
    // mobiles, Norway's 47…, Denmark's 45… (whisperfish/rust-phonenumber#68). Read it as
    // national first, as libphonenumber does, and as the code without `+` only when the
    // national reading is no number.
    if number.code().source() == phonenumber::country::Source::Number
        && let Ok(national) =
            phonenumber::parse(None, format!("+{}{written}", number.code().value()))
        && national.is_valid()
    {
        number = national;
    }
    if !number.is_valid() {
        return Err(format!(
            "`{raw}` is not a valid phone number (numbers without a country code are read as {region:?}; write +<country code> otherwise)"
        ));
    }
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    // The number types are matched here on the national number with its leading zeros: the
    // crate's `number_type` drops them, and so finds no type for an Italian landline.
    let national = number.national().to_string();
    let regions = phonenumber::metadata::DATABASE
        .by_code(&number.code().value())
        .unwrap_or_default();
    let is = |kind: fn(&Descriptors) -> Option<&Descriptor>| {
        regions
            .iter()
            .any(|m| kind(m.descriptors()).is_some_and(|d| d.is_match(&national)))
    };
    let line = if is(Descriptors::mobile) {
        Line::Mobile
    } else if is(Descriptors::fixed_line) {
        Line::Landline
    } else {
        Line::Service
    };
    Ok((e164, line))
}

/// Where a Telegram message goes: a chat id (a person's is positive, a group's negative,
/// a supergroup's or channel's starts with -100) or a public channel's `@username`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TelegramChat {
    Id(i64),
    Username(String),
}

impl TelegramChat {
    pub fn parse(raw: &str) -> Result<TelegramChat, String> {
        if let Some(name) = raw.strip_prefix('@') {
            // Telegram usernames: 5–32 characters, letters, digits and underscores, starting with
            // a letter; case does not matter.
            let valid = (5..=32).contains(&name.len())
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            return if valid {
                Ok(TelegramChat::Username(name.to_ascii_lowercase()))
            } else {
                Err(format!(
                    "`{raw}` is not a Telegram @username (5–32 letters, digits or `_`, starting with a letter)"
                ))
            };
        }
        match raw.parse::<i64>() {
            Ok(id) if id != 0 => Ok(TelegramChat::Id(id)),
            _ => Err(format!(
                "`{raw}` is not a Telegram chat: expected a chat id such as 123456789 or -1001234567890, or a channel's @username"
            )),
        }
    }

    /// Groups, supergroups and channels: anything but a conversation with one person.
    pub fn is_group(&self) -> bool {
        match self {
            TelegramChat::Id(id) => *id < 0,
            TelegramChat::Username(_) => true,
        }
    }
}

impl fmt::Display for TelegramChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TelegramChat::Id(id) => write!(f, "{id}"),
            TelegramChat::Username(name) => write!(f, "@{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::subscriber::{ChannelKind, Language, SubscriberRules};
    use crate::hostile;

    fn rules() -> SubscriberRules {
        SubscriberRules::new(Language::try_from("it".to_owned()).unwrap())
    }

    #[test]
    fn phone_numbers_are_stored_in_e164() {
        let sms = ChannelKind::Sms;
        let r = rules();
        for written in [
            "333 123 4567",
            "+39 333 1234567",
            "0039 3331234567",
            "+393331234567",
        ] {
            assert_eq!(
                sms.parse_address(written, &r).unwrap(),
                "+393331234567",
                "{written}"
            );
        }
        // Another country, written in full.
        assert_eq!(
            sms.parse_address("+44 7911 123456", &r).unwrap(),
            "+447911123456"
        );
        // A number known not to be a mobile cannot receive SMS.
        let toll_free = sms.parse_address("+39 800 123456", &r).unwrap_err();
        assert!(toll_free.contains("not a mobile number"), "{toll_free}");
        // Nonsense is not a number.
        for bad in ["", "abc", "123", "+39 333"] {
            assert!(sms.parse_address(bad, &r).is_err(), "{bad} accepted");
        }
        // The region decides how a national number is read.
        let uk = SubscriberRules {
            phone_region: phonenumber::country::Id::GB,
            ..rules()
        };
        assert_eq!(
            sms.parse_address("07911 123456", &uk).unwrap(),
            "+447911123456"
        );
    }

    #[test]
    fn italian_mobiles_of_every_range_are_read_as_national_numbers() {
        let sms = ChannelKind::Sms;
        let r = rules();
        // The plan gives mobiles the 3 decade: 31x to 39x, ten digits (the 39x ranges begin
        // with Italy's own country code, and were taken for numbers written without `+`).
        for prefix in 310..=399 {
            let e164 = format!("+39{prefix}1234567");
            for written in [
                format!("{prefix}1234567"),
                format!("{prefix} 123 4567"),
                format!("{prefix}.123.45.67"),
                format!("{prefix}-123-4567"),
                format!("({prefix}) 1234567"),
                format!("{prefix}/1234567"),
                format!("+39 {prefix} 1234567"),
                format!("+39{prefix}1234567"),
                format!("0039 {prefix} 1234567"),
                format!("0039-{prefix}-123-4567"),
                format!("(+39) {prefix} 123 4567"),
            ] {
                assert_eq!(
                    sms.parse_address(&written, &r),
                    Ok(e164.clone()),
                    "{written}"
                );
            }
        }
        // TIM's first numbers have nine digits.
        assert_eq!(
            sms.parse_address("333 123456", &r),
            Ok("+39333123456".to_owned())
        );
        // Written with the country code but without `+`: no national number is that long.
        assert_eq!(
            sms.parse_address("39 333 1234567", &r),
            Ok("+393331234567".to_owned())
        );
        // 30x is no mobile range.
        for prefix in 300..=309 {
            let written = format!("{prefix}1234567");
            assert!(
                sms.parse_address(&written, &r).is_err(),
                "{written} accepted"
            );
        }
    }

    #[test]
    fn landlines_keep_their_zero_and_cannot_receive_sms() {
        let sms = ChannelKind::Sms;
        for (written, e164) in [
            ("06 1234567", "+39061234567"),
            ("06 12345678", "+390612345678"),
            ("02 12345678", "+390212345678"),
            ("075 1234567", "+390751234567"),
            ("0744 123456", "+390744123456"),
            ("+39 06 1234567", "+39061234567"),
            ("0039 06 1234567", "+39061234567"),
            ("+39 (0)6 1234567", "+39061234567"),
        ] {
            let refused = sms.parse_address(written, &rules()).unwrap_err();
            assert!(
                refused.contains("landline") && refused.contains(e164),
                "{written}: {refused}"
            );
            // A desk's landline can be called.
            assert_eq!(
                ChannelKind::Voice.parse_address(written, &rules()),
                Ok(e164.to_owned())
            );
        }
        assert_eq!(
            ChannelKind::Voice.parse_address("333 123 4567", &rules()),
            Ok("+393331234567".to_owned())
        );
        let toll_free = ChannelKind::Voice.parse_address("800 123456", &rules());
        assert!(toll_free.is_err(), "{toll_free:?}");
    }

    #[test]
    fn other_countries_numbers_are_read_with_their_code() {
        let sms = ChannelKind::Sms;
        for (written, e164) in [
            ("+44 7911 123456", "+447911123456"),
            ("0044 7911 123456", "+447911123456"),
            ("+49 151 23456789", "+4915123456789"),
            ("+33 6 12 34 56 78", "+33612345678"),
            ("+41 78 123 45 67", "+41781234567"),
            ("+34 612 34 56 78", "+34612345678"),
            ("+1 (201) 555-0123", "+12015550123"),
            ("+47 406 12 345", "+4740612345"),
            // Côte d'Ivoire's mobiles keep a leading zero after the country code.
            ("+225 01 23 45 67 89", "+2250123456789"),
        ] {
            assert_eq!(
                sms.parse_address(written, &rules()),
                Ok(e164.to_owned()),
                "{written}"
            );
        }
        // In Norway and Denmark too, national numbers can begin with the country code.
        for (region, written, e164) in [
            (phonenumber::country::Id::NO, "47 12 34 56", "+4747123456"),
            (phonenumber::country::Id::DK, "45 12 34 56", "+4545123456"),
            (
                phonenumber::country::Id::GB,
                "07911 123456",
                "+447911123456",
            ),
        ] {
            let local = SubscriberRules {
                phone_region: region,
                ..rules()
            };
            assert_eq!(
                sms.parse_address(written, &local),
                Ok(e164.to_owned()),
                "{region:?} {written}"
            );
        }
    }

    #[test]
    fn a_phone_number_is_digits_and_separators() {
        let sms = ChannelKind::Sms;
        for (written, said) in [
            ("333 123 4567 ext. 5", "U+0065"),
            ("333\u{0}1234567", "U+0000"),
            ("tel:+393331234567", "U+0074"),
            ("333+1234567", "`+`"),
            ("+", "no digits"),
            ("333 123 4567 890 123 456 789", "22 digits"),
        ] {
            let refused = sms.parse_address(written, &rules()).unwrap_err();
            assert!(refused.contains(said), "{written:?}: {refused}");
        }
    }

    #[test]
    fn telegram_addresses() {
        let tg = ChannelKind::Telegram;
        assert_eq!(
            tg.parse_address(" 123456789 ", &rules()).unwrap(),
            "123456789"
        );
        assert_eq!(
            tg.parse_address("-1001234567890", &rules()).unwrap(),
            "-1001234567890"
        );
        assert_eq!(
            tg.parse_address("@Regione_Avvisi", &rules()).unwrap(),
            "@regione_avvisi"
        );
        for bad in ["0", "abc", "@ab", "@1abcde", "@with space", "12.5", ""] {
            assert!(tg.parse_address(bad, &rules()).is_err(), "{bad} accepted");
        }
        assert!(!TelegramChat::parse("42").unwrap().is_group());
        assert!(TelegramChat::parse("-42").unwrap().is_group());
        assert!(TelegramChat::parse("@regione_avvisi").unwrap().is_group());
    }

    proptest! {
        /// Whatever is written, the answer is a refusal or one E.164 number (`+`, then 7 to 15
        /// digits: Niue's and Tokelau's mobiles have seven) that reads as itself.
        #[test]
        fn a_number_is_refused_or_stored_in_e164(
            written in prop_oneof![hostile::phone_number(), hostile::text()]
        ) {
            if let Ok(e164) = ChannelKind::Sms.parse_address(&written, &rules()) {
                let digits = e164.strip_prefix('+').unwrap_or_default();
                prop_assert!(
                    (7..=15).contains(&digits.len())
                        && !digits.starts_with('0')
                        && digits.bytes().all(|b| b.is_ascii_digit()),
                    "{written:?} became {e164}"
                );
                prop_assert_eq!(ChannelKind::Sms.parse_address(&e164, &rules()), Ok(e164.clone()));
            }
        }
    }
}
