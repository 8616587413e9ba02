//! Messages: an incident update rendered for one channel in one language, within the
//! channel's length (Telegram's 4096 characters, an SMS template's `max_segments`, a social
//! network's count), by leaving signals out before cutting; and the short texts the Telegram bot
//! answers with and citizens receive when they sign up.

use super::env::{Form, describe, template_name};
use super::placeholders::{DETAIL, MANAGE_URL, RECIPIENT_NAME, manage_url_sample};
use super::{MessageContext, RenderError, Renderer, sms, social, telegram};
use crate::domain::subscriber::{ChannelKind, Language, MAX_NAME_CHARS};

/// Text for one channel, before per-recipient placeholders are filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub language: String,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

/// A field on one line: every run of white space and control characters one space, trimmed.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an SMS template costs at most, when it does not say (`{% set max_segments = N %}`).
pub const SMS_DEFAULT_MAX_SEGMENTS: u32 = 2;

impl Renderer {
    /// Renders every part of `channel` in the language chosen for `wanted`.
    pub fn render(
        &self,
        channel: ChannelKind,
        wanted: &Language,
        ctx: &MessageContext,
    ) -> Result<Rendered, RenderError> {
        let language = self
            .language_for(channel, wanted)
            .ok_or(RenderError::NoTemplates(channel))?;
        self.render_in(channel, &language, ctx)
    }

    /// Renders in a template language returned by [`Renderer::language_for`].
    pub fn render_in(
        &self,
        channel: ChannelKind,
        language: &str,
        ctx: &MessageContext,
    ) -> Result<Rendered, RenderError> {
        let language = language.to_owned();
        let value = minijinja::Value::from(minijinja::value::Serde(ctx));
        let render =
            |part: &str| self.render_named(&template_name(channel, &language, part), &value);
        let form = self
            .forms
            .get(&channel)
            .ok_or(RenderError::NoTemplates(channel))?;
        let rendered = match form {
            Form::Mail => Rendered {
                subject: Some(single_line(&render("subject")?)),
                text: render("text")?,
                html: Some(render("html")?),
                language,
            },
            Form::Telegram => Rendered {
                subject: None,
                text: self.render_telegram(&language, ctx)?,
                html: None,
                language,
            },
            Form::Sms => Rendered {
                subject: None,
                text: self.render_sms(&language, ctx)?.text,
                html: None,
                language,
            },
            Form::Post => Rendered {
                subject: None,
                text: self.render_post(channel, &language, ctx)?.text,
                html: None,
                language,
            },
            Form::Statement => Rendered {
                subject: Some(crate::domain::text::headline(&single_line(&render(
                    "title",
                )?))),
                text: self.render_post(channel, &language, ctx)?.text,
                html: None,
                language,
            },
            Form::Text => Rendered {
                subject: None,
                text: render("text")?,
                html: None,
                language,
            },
            Form::AppIo => Rendered {
                subject: Some(super::appio::fit_subject(&render("subject")?, &language)),
                text: super::appio::fit_markdown(&render("markdown")?, &language),
                html: None,
                language,
            },
            Form::Fields => {
                let mut text = String::new();
                for part in form.parts() {
                    let value = one_line(&render(part)?);
                    text.push_str(&format!("{part}: {value}\n"));
                }
                Rendered {
                    subject: None,
                    text: text.trim_end().to_owned(),
                    html: None,
                    language,
                }
            }
        };
        Ok(rendered)
    }

    /// A Telegram message within Telegram's limit: when the whole text is too long, it is
    /// rendered again with fewer signals (templates say how many were left out), and only if
    /// that is not enough is it cut.
    fn render_telegram(&self, language: &str, ctx: &MessageContext) -> Result<String, RenderError> {
        let name = template_name(ChannelKind::Telegram, language, "message");
        let render = |ctx: &MessageContext| {
            self.render_named(&name, &minijinja::Value::from(minijinja::value::Serde(ctx)))
        };
        // The recipient's name and link replace their placeholders at send time; leave room for
        // the longest.
        let link_room = manage_url_sample(&ctx.public_url)
            .len()
            .saturating_sub(MANAGE_URL.len());
        let limit = |text: &str| {
            let names = text.matches(RECIPIENT_NAME).count();
            let links = text.matches(MANAGE_URL).count();
            telegram::MAX_LEN
                .saturating_sub(names * (MAX_NAME_CHARS - RECIPIENT_NAME.len()))
                .saturating_sub(links * link_room)
        };
        let text = with_fewer_signals(ctx, render(ctx)?, render, |text| {
            telegram::visible_len(text) > limit(text)
        })?;
        let max = limit(&text);
        Ok(telegram::truncate(&text, max))
    }

    /// An SMS within its template's `max_segments`: folded to GSM-7 if so configured, rendered
    /// again with fewer signals while too long, and cut only if that is not enough.
    pub fn render_sms(&self, language: &str, ctx: &MessageContext) -> Result<SmsText, RenderError> {
        let name = template_name(ChannelKind::Sms, language, "text");
        let fail = |e: minijinja::Error| RenderError::Template {
            name: name.clone(),
            detail: describe(&name, &e),
        };
        let template = self.env.get_template(&name).map_err(fail)?;
        let render = |ctx: &MessageContext| -> Result<(String, u32), RenderError> {
            let captured = template
                .render_captured(minijinja::Value::from(minijinja::value::Serde(ctx)))
                .map_err(fail)?;
            let declared = captured.state().lookup("max_segments");
            let max = match declared {
                None => SMS_DEFAULT_MAX_SEGMENTS,
                Some(v) => u32::try_from(v.clone())
                    .ok()
                    .filter(|n| (1..=10).contains(n))
                    .ok_or_else(|| RenderError::Template {
                        name: name.clone(),
                        detail: format!(
                            "{name}: max_segments is `{v}`, expected a number from 1 to 10"
                        ),
                    })?,
            };
            let text = captured.into_output().trim().to_owned();
            let text = if self.sms_fold {
                sms::fold_to_gsm7(&text)
            } else {
                text
            };
            Ok((text, max))
        };
        let (first, max_segments) = render(ctx)?;
        // A last line with the preferences link is measured as long as the longest link, and
        // kept whole when the rest is cut; an affected list's detail as long as the longest.
        let sample = manage_url_sample(&ctx.public_url);
        let detail = "d".repeat(crate::domain::affected::MAX_DETAIL_CHARS);
        let as_sent = |text: &str| text.replace(MANAGE_URL, &sample).replace(DETAIL, &detail);
        let text = with_fewer_signals(
            ctx,
            first,
            |ctx| render(ctx).map(|(text, _)| text),
            |text| sms::measure(&as_sent(text)).segments > max_segments,
        )?;
        let fits_without_cutting = sms::measure(&as_sent(&text)).segments <= max_segments;
        let text = match text
            .rfind('\n')
            .filter(|at| text[*at..].contains(MANAGE_URL))
        {
            Some(at) if !fits_without_cutting => {
                let (body, tail) = text.split_at(at);
                sms::truncate_before(body, &as_sent(tail), tail, max_segments)
            }
            // An affected list's text is cut as sent with the longest detail, so that a real
            // one never makes it longer and the placeholder is never cut in half; when even
            // the detail's line would be cut, the line goes.
            _ if !fits_without_cutting && text.contains(DETAIL) => {
                let cut = sms::truncate(&text.replace(DETAIL, &detail), max_segments);
                if cut.contains(&detail) {
                    cut.replacen(&detail, DETAIL, 1)
                } else {
                    let without: String = text
                        .split_inclusive('\n')
                        .filter(|line| !line.contains(DETAIL))
                        .collect();
                    sms::truncate(&without, max_segments)
                }
            }
            _ => sms::truncate(&text, max_segments),
        };
        Ok(SmsText {
            text,
            max_segments,
            fits_without_cutting,
        })
    }

    /// A post for a social network, within the network's limit counted its way, or the lower
    /// `max_length` the template declares (`{% set max_length = N %}`): without the characters
    /// networks refuse, rendered again with fewer signals while too long, then cut before its
    /// last line (the link), which is kept, never inside a link, a mention or a hashtag.
    pub fn render_post(
        &self,
        channel: ChannelKind,
        language: &str,
        ctx: &MessageContext,
    ) -> Result<Post, RenderError> {
        let name = template_name(channel, language, "post");
        let fail = |e: minijinja::Error| RenderError::Template {
            name: name.clone(),
            detail: describe(&name, &e),
        };
        let template = self.env.get_template(&name).map_err(fail)?;
        let network_max = self.social.limit(channel).unwrap_or(usize::MAX);
        let render = |ctx: &MessageContext| -> Result<(String, usize), RenderError> {
            let captured = template
                .render_captured(minijinja::Value::from(minijinja::value::Serde(ctx)))
                .map_err(fail)?;
            let max = match captured.state().lookup("max_length") {
                None => network_max,
                Some(v) => usize::try_from(v.clone())
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| RenderError::Template {
                        name: name.clone(),
                        detail: format!("{name}: max_length is `{v}`, expected a positive number"),
                    })?
                    .min(network_max),
            };
            let text = social::clean(captured.into_output().trim());
            Ok((text.trim().to_owned(), max))
        };
        let (first, max_length) = render(ctx)?;
        let fits = |text: &str| self.social.fits_within(channel, text, max_length);
        let text = with_fewer_signals(ctx, first, |ctx| render(ctx).map(|(t, _)| t), |t| !fits(t))?;
        let fits_without_cutting = fits(&text);
        Ok(Post {
            text: if fits_without_cutting {
                text
            } else {
                social::fit(&text, fits)
            },
            max_length,
            fits_without_cutting,
        })
    }

    /// What the Telegram bot answers: macro `name` of `telegram/<language>/bot.j2`, in the
    /// chat's language (or the fallback), its arguments escaped for Telegram.
    pub fn bot_text(
        &self,
        wanted: &Language,
        name: &str,
        args: &[minijinja::Value],
    ) -> Result<String, RenderError> {
        let language = self
            .language_for(ChannelKind::Telegram, wanted)
            .ok_or(RenderError::NoTemplates(ChannelKind::Telegram))?;
        self.call_macro(
            &template_name(ChannelKind::Telegram, &language, "bot"),
            name,
            args,
        )
    }

    /// A message to a citizen signing up (`web/<language>/citizen.j2`): the confirmation email
    /// (its first line the subject) or the SMS code.
    pub fn citizen_text(
        &self,
        wanted: &Language,
        name: &str,
        args: &[minijinja::Value],
    ) -> Result<String, RenderError> {
        let mut template = format!("web/{}/citizen.j2", wanted.primary());
        if self.env.get_template(&template).is_err() {
            template = format!("web/{}/citizen.j2", self.fallback.primary());
        }
        self.call_macro(&template, name, args)
    }

    fn call_macro(
        &self,
        template: &str,
        name: &str,
        args: &[minijinja::Value],
    ) -> Result<String, RenderError> {
        let fail = |e: minijinja::Error| RenderError::Template {
            name: format!("{template} ({name})"),
            detail: describe(template, &e),
        };
        let mut captured = self
            .env
            .get_template(template)
            .map_err(fail)?
            .render_captured(minijinja::context! {})
            .map_err(fail)?;
        captured
            .with_state_mut(|state| state.call_macro(name, args))
            .map_err(fail)
    }
}

/// `first` (the text rendered from `ctx`), or while `too_long` says it is, the text rendered
/// again with half as many signals, the others counted in `signals_omitted`.
fn with_fewer_signals(
    ctx: &MessageContext,
    first: String,
    render: impl Fn(&MessageContext) -> Result<String, RenderError>,
    too_long: impl Fn(&str) -> bool,
) -> Result<String, RenderError> {
    let mut text = first;
    let mut keep = ctx.signals.len();
    while too_long(&text) && keep > 0 {
        keep /= 2;
        let mut shorter = ctx.clone();
        shorter.signals.truncate(keep);
        shorter.signals_omitted = ctx.signals.len() - keep;
        text = render(&shorter)?;
    }
    Ok(text)
}

/// A social post as rendered, and what its template allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub text: String,
    pub max_length: usize,
    /// False when even without signals the text was too long and had to be cut.
    pub fits_without_cutting: bool,
}

/// An SMS as rendered, and what its template allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsText {
    pub text: String,
    pub max_segments: u32,
    /// False when even without signals the text was too long and had to be cut.
    pub fits_without_cutting: bool,
}

fn single_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::{Finding, UpdateKind};
    use crate::render::testing::renderer;
    use crate::render::{Markup, Placeholders, SignalView, UNSUBSCRIBE_URL, sample_context};

    #[test]
    fn telegram_messages_escape_what_monitors_send() {
        let r = renderer();
        let it = Language::try_from("it".to_owned()).unwrap();
        let mut ctx = sample_context(UpdateKind::Opened);
        ctx.incident.title = "CUP <backend> & \"API\" 🚨".into();
        ctx.signals[0].summary = "latency > 5s & errors < 1%".into();
        let out = r.render(ChannelKind::Telegram, &it, &ctx).unwrap();
        assert_eq!(out.subject, None);
        assert!(
            out.text
                .contains("<b>CUP &lt;backend&gt; &amp; &quot;API&quot; 🚨</b>"),
            "{}",
            out.text
        );
        assert!(out.text.contains("latency &gt; 5s &amp; errors &lt; 1%"));
        assert!(out.text.contains("🔴 <b>Disservizio in corso</b>"));
        let p = Placeholders {
            recipient_name: "CUP <Foligno>",
            unsubscribe_url: "https://x/u?a&b",
            manage_url: "https://x/manage/1.s",
            ack_url: "",
        };
        assert_eq!(
            p.fill_as(
                &format!("{RECIPIENT_NAME} {UNSUBSCRIBE_URL}"),
                Markup::TelegramHtml
            ),
            "CUP &lt;Foligno&gt; https://x/u?a&amp;b"
        );
    }

    /// The sample incident opening with one signal from a probe that found `finding`.
    fn probed(finding: Finding) -> MessageContext {
        let mut ctx = sample_context(UpdateKind::Opened);
        ctx.signals.truncate(1);
        ctx.signals[0].summary = "Portale CUP".into();
        ctx.signals[0].finding = Some(finding);
        ctx
    }

    #[test]
    fn a_probes_finding_reads_in_the_recipients_language() {
        let r = renderer();
        let it = Language::try_from("it".to_owned()).unwrap();
        let en = Language::try_from("en".to_owned()).unwrap();
        let http = probed(Finding::HttpStatus {
            status: 503,
            expected: vec!["2xx".into(), "301".into()],
        });
        let cert = probed(Finding::CertificateExpiring {
            target: "cup.regione.example:443".into(),
            days: 5,
        });
        for channel in [ChannelKind::Email, ChannelKind::Telegram, ChannelKind::Sms] {
            let text = r.render(channel, &it, &http).unwrap().text;
            assert!(
                text.contains("Portale CUP: HTTP 503 (atteso 2xx o 301)"),
                "{channel}: {text}"
            );
            assert!(!text.contains("expected"), "{channel}: {text}");
            let text = r.render(channel, &en, &http).unwrap().text;
            assert!(
                text.contains("Portale CUP: HTTP 503 (expected 2xx or 301)"),
                "{channel}: {text}"
            );
            let text = r.render(channel, &it, &cert).unwrap().text;
            assert!(
                text.contains("il certificato di cup.regione.example:443 scade tra 5 giorni"),
                "{channel}: {text}"
            );
        }
        // Every kind has words of its own in each language, never the bare kind.
        for finding in Finding::samples() {
            let kind = serde_json::to_value(&finding).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned();
            for language in [&it, &en] {
                let text = r
                    .render(ChannelKind::Email, language, &probed(finding.clone()))
                    .unwrap()
                    .text;
                if kind.contains('_') {
                    assert!(!text.contains(&kind), "{language}: {kind} in {text}");
                }
            }
        }
    }

    #[test]
    fn what_a_probe_saw_is_escaped_where_markup_is_read() {
        let r = renderer();
        let it = Language::try_from("it".to_owned()).unwrap();
        let ctx = probed(Finding::DnsAnswer {
            name: "cup.example.".into(),
            record: "TXT".into(),
            answers: vec!["<b>x</b> & y".into()],
        });
        let email = r.render(ChannelKind::Email, &it, &ctx).unwrap();
        assert!(email.text.contains("<b>x</b> & y"), "{}", email.text);
        let html = email.html.unwrap();
        assert!(
            html.contains("TXT &lt;b&gt;x&lt;&#x2f;b&gt; &amp; y"),
            "{html}"
        );
        let telegram = r.render(ChannelKind::Telegram, &it, &ctx).unwrap().text;
        assert!(
            telegram.contains("&lt;b&gt;x&lt;/b&gt; &amp; y"),
            "{telegram}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever a target answers or an error says, every message still renders, and the
        /// text reaches Telegram escaped.
        #[test]
        fn any_finding_text_renders(cause in crate::hostile::text(), word in crate::hostile::word()) {
            let r = renderer();
            let findings = [
                Finding::ConnectionFailed { address: word.clone(), cause: cause.clone() },
                Finding::WrongAnswer {
                    name: word.clone(), record: "TXT".into(),
                    answers: vec![cause.clone()], expected: vec![word.clone()],
                },
                Finding::TextMissing { status: 200, text: cause.clone() },
            ];
            for finding in findings {
                let ctx = probed(finding);
                for lang in ["it", "en"] {
                    let language = Language::try_from(lang.to_owned()).unwrap();
                    for channel in [ChannelKind::Email, ChannelKind::Telegram, ChannelKind::Sms] {
                        let out = r.render(channel, &language, &ctx);
                        proptest::prop_assert!(out.is_ok(), "{channel}/{lang}: {out:?}");
                    }
                    let telegram = r.render(ChannelKind::Telegram, &language, &ctx).unwrap().text;
                    proptest::prop_assert!(
                        !cause.contains('<') || !telegram.contains(&cause),
                        "unescaped: {telegram}"
                    );
                }
            }
        }
    }

    /// The sample incident opening with `n` signals, summarised by `summary`.
    fn with_signals(n: usize, summary: impl Fn(usize) -> String) -> MessageContext {
        let mut ctx = sample_context(UpdateKind::Opened);
        let one = ctx.signals[0].clone();
        ctx.signals = (0..n)
            .map(|i| SignalView {
                summary: summary(i),
                ..one.clone()
            })
            .collect();
        ctx
    }

    #[test]
    fn long_telegram_messages_drop_signals_then_cut() {
        let r = renderer();
        let en = Language::try_from("en".to_owned()).unwrap();
        let mut ctx = with_signals(400, |i| {
            format!("host-{i} does not answer & drops <connections>")
        });
        let out = r.render(ChannelKind::Telegram, &en, &ctx).unwrap();
        let len = telegram::visible_len(&out.text);
        assert!(len <= telegram::MAX_LEN, "{len}");
        assert!(out.text.contains("more signals"), "{}", out.text);
        assert!(out.text.contains("Incident no. 42"), "the end is kept");
        // A body too long on its own is cut, markup balanced.
        ctx.signals.truncate(1);
        ctx.update.body = Some("x".repeat(10_000));
        let out = r.render(ChannelKind::Telegram, &en, &ctx).unwrap();
        assert!(telegram::visible_len(&out.text) <= telegram::MAX_LEN);
        assert!(
            out.text.ends_with('…'),
            "{}",
            &out.text[out.text.len() - 50..]
        );
    }

    #[test]
    fn sms_fits_its_segments_dropping_signals_first() {
        let r = renderer();
        let ctx = with_signals(40, |i| format!("sportello {i} non risponde"));
        let out = r.render_sms("it", &ctx).unwrap();
        let m = sms::measure(&out.text);
        assert_eq!(out.max_segments, 2);
        assert!(m.segments <= 2, "{m:?}: {}", out.text);
        assert_eq!(m.encoding, sms::Encoding::Gsm7, "{}", out.text);
        assert!(out.text.contains("segnalazioni)"), "{}", out.text);
        assert!(
            out.text.ends_with("Inc. 42"),
            "the end is kept: {}",
            out.text
        );
        assert!(out.fits_without_cutting);
    }

    #[test]
    fn a_citizens_sms_keeps_its_preferences_link_whole() {
        let r = renderer();
        let mut ctx = with_signals(40, |i| format!("sportello {i} non risponde"));
        ctx.audience = "public".into();
        ctx.public_url = "https://stato.asl.example".into();
        ctx.incident.title = "x".repeat(400);
        let out = r.render_sms("it", &ctx).unwrap();
        assert!(!out.fits_without_cutting);
        assert!(
            out.text.ends_with(&format!("Gestisci: {MANAGE_URL}")),
            "{}",
            out.text
        );
        // Sent with the longest link, it still costs at most two SMS.
        let sent = out
            .text
            .replace(MANAGE_URL, &manage_url_sample(&ctx.public_url));
        assert!(sms::measure(&sent).segments <= 2, "{sent}");
        // Desks' SMS have no such line.
        ctx.audience = "cup-desk".into();
        assert!(!r.render_sms("it", &ctx).unwrap().text.contains(MANAGE_URL));
    }

    #[test]
    fn an_affected_lists_sms_is_cut_as_sent_with_the_longest_detail() {
        let r = renderer();
        let mut ctx = with_signals(0, |i| format!("{i}"));
        ctx.audience = super::super::AFFECTED.into();
        ctx.ack_url = None;
        ctx.detail = Some(DETAIL);
        let whole = r.render_sms("it", &ctx).unwrap();
        assert!(whole.fits_without_cutting);
        assert!(
            whole
                .text
                .contains(&format!("Il suo appuntamento: {DETAIL}."))
        );
        let longest = "d".repeat(crate::domain::affected::MAX_DETAIL_CHARS);
        for title in [150, 400] {
            ctx.incident.title = "x".repeat(title);
            let out = r.render_sms("it", &ctx).unwrap();
            assert!(!out.fits_without_cutting);
            let sent = out.text.replace(DETAIL, &longest);
            assert!(sms::measure(&sent).segments <= 2, "{sent}");
            // The placeholder is whole, or its line is gone: never half of it.
            let half = &DETAIL[..DETAIL.len() / 2];
            assert_eq!(
                out.text.contains(half),
                out.text.contains(DETAIL),
                "{}",
                out.text
            );
        }
    }

    #[test]
    fn sms_folding_keeps_an_accented_italian_text_in_gsm7() {
        let mut ctx = sample_context(UpdateKind::Opened);
        ctx.incident.title = "È in corso un guasto: l’accesso ai referti è sospeso".into();
        let folded = renderer().render_sms("it", &ctx).unwrap();
        assert!(
            folded
                .text
                .contains("E' in corso un guasto: l'accesso ai referti è sospeso")
        );
        assert_eq!(sms::measure(&folded.text).encoding, sms::Encoding::Gsm7);
        let kept = renderer()
            .with_sms_fold(false)
            .render_sms("it", &ctx)
            .unwrap();
        assert!(kept.text.contains("È in corso"), "{}", kept.text);
        let m = sms::measure(&kept.text);
        assert_eq!(m.encoding, sms::Encoding::Ucs2);
        assert!(m.segments <= 2, "{m:?}");
        // In the same two segments, the folded text says much more.
        assert!(
            folded.text.chars().count() > kept.text.chars().count() + 50,
            "{}\n---\n{}",
            folded.text,
            kept.text
        );
    }

    #[test]
    fn posts_lose_the_characters_networks_refuse() {
        let r = renderer();
        let mut ctx = sample_context(UpdateKind::Updated);
        ctx.update.body = Some(
            "Guasto\0 al\u{1b}[31m CUP\r\nriprova\u{feff} più tardi\u{fffe}\u{ffff}\u{85}fine\u{b}qui\rora"
                .into(),
        );
        for channel in [
            ChannelKind::Mastodon,
            ChannelKind::Bluesky,
            ChannelKind::X,
            ChannelKind::Facebook,
        ] {
            let post = r.render_post(channel, "it", &ctx).unwrap();
            assert!(
                post.text
                    .contains("Guasto al[31m CUP\nriprova più tardi\nfine qui\nora"),
                "{channel}: {:?}",
                post.text
            );
        }
    }

    proptest! {
        #[test]
        fn posts_fit_their_network_whatever_monitors_and_operators_write(
            title in crate::hostile::text(),
            body in crate::hostile::text(),
            service in crate::hostile::word(),
        ) {
            static RENDERER: LazyLock<Renderer> = LazyLock::new(renderer);
            let r = &*RENDERER;
            let mut ctx = sample_context(UpdateKind::Updated);
            ctx.incident.title = title;
            ctx.incident.services = vec![service];
            ctx.update.body = Some(body);
            let limits = r.social_limits();
            for channel in ChannelKind::SOCIAL {
                let post = r.render_post(channel, "it", &ctx).unwrap_or_else(|e| panic!("{e}"));
                let text = &post.text;
                prop_assert!(limits.fits(channel, text), "{channel}: {text:?}");
                prop_assert!(limits.length(channel, text) <= post.max_length, "{channel}");
                prop_assert!(!text.contains(|c| social::refused(c) || c == '\r'), "{text:?}");
                let last = text.lines().last().unwrap_or_default();
                prop_assert!(last.ends_with(&format!(" {}", ctx.incident_url)), "{channel}: {text:?}");
            }
        }

        #[test]
        fn app_io_messages_fit_app_io_whatever_monitors_and_operators_write(
            title in crate::hostile::text(),
            body in crate::hostile::text(),
            services in proptest::collection::vec(crate::hostile::word(), 0..40),
            kind in proptest::sample::select(vec![UpdateKind::Opened, UpdateKind::Updated, UpdateKind::Resolved]),
        ) {
            static RENDERER: LazyLock<Renderer> = LazyLock::new(renderer);
            let r = &*RENDERER;
            let mut ctx = sample_context(kind);
            ctx.incident.title = title;
            ctx.incident.services = services;
            ctx.update.body = Some(body);
            for language in ["it", "en"] {
                let out = r.render_in(ChannelKind::AppIo, language, &ctx).unwrap_or_else(|e| panic!("{e}"));
                let subject = out.subject.unwrap_or_default();
                prop_assert!(
                    crate::render::appio::within(&subject, crate::render::appio::SUBJECT_MIN, crate::render::appio::SUBJECT_MAX),
                    "{subject:?}"
                );
                prop_assert!(
                    crate::render::appio::within(&out.text, crate::render::appio::MARKDOWN_MIN, crate::render::appio::MARKDOWN_MAX),
                    "{} characters", out.text.chars().count()
                );
                prop_assert!(!subject.contains('\n'));
            }
        }
    }
}
