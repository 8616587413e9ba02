//! Label matchers in Alertmanager's syntax: `name="value"`, `name!="value"`, `name=~"regex"`,
//! `name!~"regex"`. Regexes are anchored at both ends, as in Alertmanager, so `service=~"cup.*"`
//! matches `cup-backend` but not `my-cup`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("empty matcher")]
    Empty,
    #[error("`{0}`: expected a label name followed by =, !=, =~ or !~")]
    NoOperator(String),
    #[error("`{0}`: label name is empty")]
    EmptyName(String),
    #[error("`{0}`: unterminated quoted value")]
    Unterminated(String),
    #[error("`{0}`: unexpected text after the quoted value")]
    TrailingText(String),
    #[error("`{input}`: invalid regex: {reason}")]
    BadRegex { input: String, reason: String },
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, MatcherError> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(anchored(value).map_err(|reason| MatcherError::BadRegex {
                    input: format!("{name}{}\"{value}\"", op.as_str()),
                    reason,
                })?)
            }
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    /// A missing label matches as the empty string, as in Alertmanager: `area!="umbria"` matches a
    /// signal without `area`, and `area=""` selects signals that lack it.
    pub fn matches(&self, labels: &Labels) -> bool {
        let actual = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (&self.op, &self.regex) {
            (MatchOp::Equal, _) => actual == self.value,
            (MatchOp::NotEqual, _) => actual != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(actual),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(actual),
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

/// Compiles `^(?:pattern)$`, once per pattern for the life of the process: thousands of
/// subscriptions usually share a handful of patterns, and compiling is the costly part of loading
/// them.
fn anchored(pattern: &str) -> Result<Regex, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(re) = cache.lock().ok().and_then(|c| c.get(pattern).cloned()) {
        return Ok(re);
    }
    let re = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| e.to_string())?;
    if let Ok(mut c) = cache.lock() {
        // Bounded: patterns come from administrators, but never let the cache grow without end.
        if c.len() >= 10_000 {
            c.clear();
        }
        c.insert(pattern.to_owned(), re.clone());
    }
    Ok(re)
}

/// True when every matcher matches (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

impl FromStr for Matcher {
    type Err = MatcherError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(MatcherError::Empty);
        }
        let (name_part, rest) =
            split_name(s).ok_or_else(|| MatcherError::NoOperator(input.into()))?;
        let name = unquote_name(name_part.trim())
            .ok_or_else(|| MatcherError::Unterminated(input.into()))?;
        if name.is_empty() {
            return Err(MatcherError::EmptyName(input.into()));
        }
        let (op, value_part) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchOp::Regex, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchOp::Equal, v)
        } else {
            return Err(MatcherError::NoOperator(input.into()));
        };
        let value = parse_value(value_part.trim(), input)?;
        Matcher::new(&name, op, &value)
    }
}

/// Splits at the first operator character outside a quoted name.
fn split_name(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    if bytes.first() == Some(&b'"') {
        i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
    }
    let offset = s.get(i..)?.find(['=', '!'])? + i;
    Some((&s[..offset], s[offset..].trim_start()))
}

fn unquote_name(name: &str) -> Option<String> {
    if name.starts_with('"') {
        let (value, rest) = read_quoted(name)?;
        rest.trim().is_empty().then_some(value)
    } else {
        Some(name.to_owned())
    }
}

fn parse_value(v: &str, input: &str) -> Result<String, MatcherError> {
    if v.starts_with('"') {
        let (value, rest) =
            read_quoted(v).ok_or_else(|| MatcherError::Unterminated(input.into()))?;
        if !rest.trim().is_empty() {
            return Err(MatcherError::TrailingText(input.into()));
        }
        Ok(value)
    } else {
        Ok(v.to_owned())
    }
}

/// Reads a double-quoted string with Go-style escapes; returns the value and the rest.
fn read_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                // Keep a backslash before characters that are not string escapes: inside a regex
                // `\.` must stay `\.`.
                other @ ('"' | '\\') => out.push(other),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = self.value.replace('\\', "\\\\").replace('"', "\\\"");
        write!(f, "{}{}\"{}\"", self.name, self.op.as_str(), escaped)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(s: &str) -> Matcher {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_four_operators() {
        assert_eq!(m(r#"service="cup""#).op, MatchOp::Equal);
        assert_eq!(m(r#"service!="cup""#).op, MatchOp::NotEqual);
        assert_eq!(m(r#"service=~"cup.*""#).op, MatchOp::Regex);
        assert_eq!(m(r#"service!~"cup.*""#).op, MatchOp::NotRegex);
        assert_eq!(m(r#" service = "cup" "#).name, "service");
        assert_eq!(m("service=cup").value, "cup");
    }

    #[test]
    fn regexes_are_anchored() {
        let cup = m(r#"service=~"cup.*""#);
        assert!(cup.matches(&labels(&[("service", "cup-backend")])));
        assert!(cup.matches(&labels(&[("service", "cup")])));
        assert!(!cup.matches(&labels(&[("service", "my-cup")])));
        let alt = m(r#"area=~"umbria|marche""#);
        assert!(alt.matches(&labels(&[("area", "marche")])));
        assert!(!alt.matches(&labels(&[("area", "umbria-nord")])));
    }

    #[test]
    fn missing_label_is_empty_string() {
        assert!(m(r#"area!="umbria""#).matches(&labels(&[])));
        assert!(m(r#"area="""#).matches(&labels(&[])));
        assert!(!m(r#"area=~".+""#).matches(&labels(&[])));
        assert!(m(r#"area!~".+""#).matches(&labels(&[])));
    }

    #[test]
    fn escapes_in_values() {
        let quoted = m(r#"summary="say \"hi\"""#);
        assert_eq!(quoted.value, r#"say "hi""#);
        let dotted = m(r#"host=~"db\.example\.org""#);
        assert!(dotted.matches(&labels(&[("host", "db.example.org")])));
        assert!(!dotted.matches(&labels(&[("host", "dbxexample.org")])));
        assert_eq!(m(r#""odd name"="x""#).name, "odd name");
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!("".parse::<Matcher>(), Err(MatcherError::Empty));
        assert!(matches!(
            "service".parse::<Matcher>(),
            Err(MatcherError::NoOperator(_))
        ));
        assert!(matches!(
            r#"service="cup"#.parse::<Matcher>(),
            Err(MatcherError::Unterminated(_))
        ));
        assert!(matches!(
            r#"service="cup" x"#.parse::<Matcher>(),
            Err(MatcherError::TrailingText(_))
        ));
        assert!(matches!(
            r#"service=~"cup(""#.parse::<Matcher>(),
            Err(MatcherError::BadRegex { .. })
        ));
        assert!(matches!(
            r#"="x""#.parse::<Matcher>(),
            Err(MatcherError::EmptyName(_))
        ));
    }

    #[test]
    fn display_round_trips() {
        for s in [r#"service=~"cup.*""#, r#"a!="b \"c\"""#, r#"x!~"y\\d""#] {
            let parsed = m(s);
            assert_eq!(m(&parsed.to_string()), parsed);
        }
    }

    #[test]
    fn all_match_is_conjunction() {
        let ms = vec![m(r#"service=~"cup.*""#), m(r#"area="umbria""#)];
        assert!(all_match(
            &ms,
            &labels(&[("service", "cup-x"), ("area", "umbria")])
        ));
        assert!(!all_match(
            &ms,
            &labels(&[("service", "cup-x"), ("area", "marche")])
        ));
        assert!(all_match(&[], &labels(&[])));
    }
}
