//! Escalation policies: a desk that has not said "seen" is reached on more channels as time goes
//! by (email and Telegram at once, a text after five minutes, a call after ten). A policy is a
//! short ladder of steps, each a delay from the desk's first message about an incident and the
//! channels it adds; the channels of the desk's addresses no step names are used at once. Here is
//! the policy as people write it and its checks; the router stores each incident's ladder and the
//! pipeline climbs it (`crate::route::escalation`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::subscriber::{ChannelKind, FieldError};

/// The most steps a policy holds.
pub const MAX_STEPS: usize = 8;

/// The latest a step may come, after the desk's first message.
pub const MAX_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// One step as written in the configuration or the API: `{ after = "5m", channels = ["sms"] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationStepSpec {
    /// How long after the desk's first message about the incident, if nobody at the desk has
    /// acknowledged it: `"0s"`, `"5m"`, `"1h 30m"`.
    pub after: String,
    /// The channels this step adds (each in one step only).
    pub channels: Vec<String>,
}

/// One step of a checked policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationStep {
    pub after: Duration,
    pub channels: Vec<ChannelKind>,
}

/// A checked policy: at most [`MAX_STEPS`] steps, `after` strictly increasing, each channel in
/// one step only, each step with a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationPolicy {
    steps: Vec<EscalationStep>,
}

impl EscalationPolicy {
    /// Checks a policy as written; each problem names its field under `field`
    /// (`escalation[1].channels[0]`).
    pub fn parse(
        specs: &[EscalationStepSpec],
        field: &str,
    ) -> Result<EscalationPolicy, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut error = |path: String, message: String| {
            errors.push(FieldError {
                field: path,
                message,
            })
        };
        if specs.is_empty() {
            error(field.to_owned(), "a policy needs at least one step".into());
        }
        if specs.len() > MAX_STEPS {
            error(
                field.to_owned(),
                format!(
                    "has {} steps; a policy holds at most {MAX_STEPS}",
                    specs.len()
                ),
            );
        }
        let mut steps: Vec<EscalationStep> = Vec::new();
        let mut previous: Option<Duration> = None;
        for (i, spec) in specs.iter().enumerate().take(MAX_STEPS) {
            let after = match humantime::parse_duration(spec.after.trim()) {
                Ok(after) if after > MAX_AFTER => {
                    error(
                        format!("{field}[{i}].after"),
                        format!(
                            "`{}` is later than {}, the longest a ladder may climb",
                            spec.after,
                            humantime::format_duration(MAX_AFTER)
                        ),
                    );
                    None
                }
                Ok(after) => Some(after),
                Err(e) => {
                    error(
                        format!("{field}[{i}].after"),
                        format!(
                            "`{}` is not a duration like \"0s\", \"5m\" or \"1h 30m\": {e}",
                            spec.after
                        ),
                    );
                    None
                }
            };
            if let (Some(after), Some(before)) = (after, previous)
                && after <= before
            {
                error(
                    format!("{field}[{i}].after"),
                    format!(
                        "`{}` must be later than the step before it ({})",
                        spec.after,
                        humantime::format_duration(before)
                    ),
                );
            }
            previous = after.or(previous);
            if spec.channels.is_empty() {
                error(
                    format!("{field}[{i}].channels"),
                    "a step needs at least one channel".into(),
                );
            }
            let mut channels = Vec::new();
            for (j, name) in spec.channels.iter().enumerate() {
                let path = format!("{field}[{i}].channels[{j}]");
                match name.parse::<ChannelKind>() {
                    Err(message) => error(path, message),
                    Ok(channel) => {
                        let earlier = steps
                            .iter()
                            .position(|s| s.channels.contains(&channel))
                            .or(channels.contains(&channel).then_some(i));
                        match earlier {
                            Some(k) => error(
                                path,
                                format!(
                                    "`{channel}` is already in step {k}; a channel is in one step only"
                                ),
                            ),
                            None => channels.push(channel),
                        }
                    }
                }
            }
            steps.push(EscalationStep {
                after: after.unwrap_or_default(),
                channels,
            });
        }
        if errors.is_empty() {
            Ok(EscalationPolicy { steps })
        } else {
            Err(errors)
        }
    }

    pub fn steps(&self) -> &[EscalationStep] {
        &self.steps
    }

    /// Whether a message on `channel` waits for a later step: named by a step that does not
    /// come at once.
    pub fn holds_back(&self, channel: ChannelKind) -> bool {
        self.steps
            .iter()
            .any(|s| !s.after.is_zero() && s.channels.contains(&channel))
    }

    /// The steps that wait (a delay above zero), with their index in the policy.
    pub fn later_steps(&self) -> impl Iterator<Item = (usize, &EscalationStep)> {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.after.is_zero())
    }

    /// The policy as written back (`after` in the shortest words: `"5m"`, `"1h 30m"`).
    pub fn specs(&self) -> Vec<EscalationStepSpec> {
        self.steps
            .iter()
            .map(|s| EscalationStepSpec {
                after: humantime::format_duration(s.after).to_string(),
                channels: s.channels.iter().map(|c| c.as_str().to_owned()).collect(),
            })
            .collect()
    }
}

impl fmt::Display for EscalationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.specs().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: {}", s.after, s.channels.join("+"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::hostile;

    fn step(after: &str, channels: &[&str]) -> EscalationStepSpec {
        EscalationStepSpec {
            after: after.into(),
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn fields(specs: &[EscalationStepSpec]) -> Vec<String> {
        EscalationPolicy::parse(specs, "escalation")
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn the_cup_desks_policy_reads_back_as_written() {
        let specs = vec![
            step("0s", &["email", "telegram"]),
            step("5m", &["sms"]),
            step("10m", &["webhook"]),
        ];
        let policy = EscalationPolicy::parse(&specs, "escalation").unwrap();
        assert_eq!(policy.specs(), specs);
        assert!(!policy.holds_back(ChannelKind::Email));
        assert!(policy.holds_back(ChannelKind::Sms));
        assert!(
            !policy.holds_back(ChannelKind::Log),
            "a channel no step names goes at once"
        );
        let later: Vec<usize> = policy.later_steps().map(|(i, _)| i).collect();
        assert_eq!(later, vec![1, 2]);
        assert_eq!(
            policy.to_string(),
            "0s: email+telegram, 5m: sms, 10m: webhook"
        );
        // A first step that waits holds its channels back too.
        let waiting = EscalationPolicy::parse(&[step("1m", &["sms"])], "e").unwrap();
        assert!(waiting.holds_back(ChannelKind::Sms));
        assert_eq!(waiting.later_steps().count(), 1);
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        assert_eq!(fields(&[]), vec!["escalation"]);
        assert_eq!(
            fields(&[step("5m", &["email"]), step("5m", &["sms"])]),
            vec!["escalation[1].after"]
        );
        assert_eq!(
            fields(&[step("5m", &["email"]), step("1m", &["sms"])]),
            vec!["escalation[1].after"]
        );
        assert_eq!(
            fields(&[step("soon", &["fax"]), step("1m", &[])]),
            vec![
                "escalation[0].after",
                "escalation[0].channels[0]",
                "escalation[1].channels"
            ]
        );
        assert_eq!(
            fields(&[step("0s", &["email", "sms"]), step("1m", &["sms", "email"])]),
            vec!["escalation[1].channels[0]", "escalation[1].channels[1]"]
        );
        assert_eq!(
            fields(&[step("0s", &["sms", "sms"])]),
            vec!["escalation[0].channels[1]"]
        );
        assert_eq!(
            fields(&[step("30d", &["sms"])]),
            vec!["escalation[0].after"]
        );
        let many: Vec<_> = (0..9).map(|i| step(&format!("{i}m"), &["x"])).collect();
        assert_eq!(fields(&many)[0], "escalation");
        let message = EscalationPolicy::parse(&[step("0s", &["fax"])], "e").unwrap_err();
        assert!(
            message[0].message.contains("unknown channel `fax`"),
            "{message:?}"
        );
    }

    proptest! {
        /// Whatever a stranger writes, a policy is refused with its fields named under
        /// `escalation`, or accepted with every rule holding.
        #[test]
        fn a_policy_is_checked_whole_whatever_is_written(
            specs in proptest::collection::vec(
                (
                    prop_oneof![hostile::text(), "[0-9]{1,4}(s|m|h|ms)", Just("0s".to_owned())],
                    proptest::collection::vec(
                        prop_oneof![
                            hostile::text(),
                            proptest::sample::select(
                                ChannelKind::ALL.map(|c| c.as_str().to_owned()).to_vec()
                            ),
                        ],
                        0..4,
                    ),
                ),
                0..11,
            )
        ) {
            let specs: Vec<EscalationStepSpec> = specs
                .into_iter()
                .map(|(after, channels)| EscalationStepSpec { after, channels })
                .collect();
            match EscalationPolicy::parse(&specs, "escalation") {
                Ok(policy) => {
                    prop_assert!(!policy.steps().is_empty() && policy.steps().len() <= MAX_STEPS);
                    let mut seen = std::collections::BTreeSet::new();
                    for pair in policy.steps().windows(2) {
                        prop_assert!(pair[0].after < pair[1].after);
                    }
                    for s in policy.steps() {
                        prop_assert!(!s.channels.is_empty() && s.after <= MAX_AFTER);
                        for c in &s.channels {
                            prop_assert!(seen.insert(*c), "{c} twice");
                        }
                    }
                    // What is stored reads back the same.
                    let again = EscalationPolicy::parse(&policy.specs(), "escalation");
                    prop_assert_eq!(again.as_ref(), Ok(&policy));
                }
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    prop_assert!(errors.iter().all(|e| e.field.starts_with("escalation")));
                }
            }
        }
    }
}
