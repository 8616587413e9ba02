//! Rendering: incident updates into channel text, from the templates under `templates/`.
//!
//! Templates are `templates/<channel>/<language>/<part>.j2` (for email the parts are `subject`,
//! `text` and `html`). The ones shipped are compiled into the binary; a directory given as
//! `templates.dir` replaces any of them file by file. Rendering happens once per update, channel,
//! language and audience; the few per-recipient parts are left as placeholders that
//! [`Placeholders::fill`] substitutes at send time, so a fan-out to thousands costs one render.

mod context;
pub mod sms;
pub mod social;
pub mod telegram;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use include_dir::{Dir, include_dir};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use crate::domain::subscriber::{ChannelKind, Language, MAX_NAME_CHARS};
use crate::domain::{Finding, UpdateKind};

pub use context::{IncidentView, MessageContext, SignalView, UpdateView, sample_context};

static BUILT_IN: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Auto-escaping for Telegram templates: Telegram HTML escapes fewer characters than HTML does.
const TELEGRAM_ESCAPE: &str = "telegram-html";

/// Fuel bounds the work one render may do, so that a looping template fails instead of hanging.
const FUEL: u64 = 200_000;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no templates for channel {0}")]
    NoTemplates(ChannelKind),
    #[error("{detail}")]
    Template { name: String, detail: String },
}

/// Text for one channel, before per-recipient placeholders are filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub language: String,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

/// How a channel's messages are rendered, and so the parts each language's template folder
/// must provide. Each channel names its form in its `ChannelSpec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A subject, a plain text and an HTML body.
    Mail,
    /// Telegram's HTML within its length, and the bot's answers.
    Telegram,
    /// Text fitted to the template's SMS segments.
    Sms,
    /// A post fitted to the network's limit.
    Post,
    /// A public statement, and the public title it is shown under.
    Statement,
    /// One plain text, whole.
    Text,
}

impl Form {
    /// The templates each language's folder must provide.
    pub fn parts(self) -> &'static [&'static str] {
        match self {
            Form::Mail => &["subject", "text", "html"],
            Form::Telegram => &["message", "bot"],
            Form::Sms | Form::Text => &["text"],
            Form::Post => &["post"],
            Form::Statement => &["post", "title"],
        }
    }
}

#[derive(Clone)]
pub struct Renderer {
    env: Arc<Environment<'static>>,
    /// How each channel's messages are rendered.
    forms: BTreeMap<ChannelKind, Form>,
    /// Languages with a complete template folder, per channel.
    languages: BTreeMap<ChannelKind, BTreeSet<String>>,
    fallback: Language,
    /// Spell SMS text in GSM-7 where a usual spelling exists (`È` → `E'`).
    sms_fold: bool,
    /// The social networks' limits (Mastodon's depends on the instance).
    social: social::Limits,
}

/// What an SMS template costs at most, when it does not say (`{% set max_segments = N %}`).
pub const SMS_DEFAULT_MAX_SEGMENTS: u32 = 2;

impl Renderer {
    /// Loads the built-in templates, then the files under `dir` (if not empty) over them.
    /// Loads the templates and checks which languages each channel of `forms` has complete.
    pub fn new(
        dir: &Path,
        fallback: &Language,
        tz: TimeZone,
        forms: &[(ChannelKind, Form)],
    ) -> Result<Renderer, Vec<String>> {
        let mut sources: BTreeMap<String, String> = BTreeMap::new();
        collect_built_in(&BUILT_IN, &mut sources);
        let mut errors = Vec::new();
        if !dir.as_os_str().is_empty()
            && let Err(e) = collect_dir(dir, dir, &mut sources)
        {
            errors.push(format!("templates.dir {}: {e}", dir.display()));
        }
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build();
        match syntax {
            Ok(s) => env.set_syntax(s),
            Err(e) => errors.push(e.to_string()),
        }
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_auto_escape_callback(|name| {
            if name.starts_with("telegram/") {
                AutoEscape::Custom(TELEGRAM_ESCAPE.into())
            } else if name.ends_with("html.j2") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| match state.auto_escape() {
            AutoEscape::Custom(name) if name == TELEGRAM_ESCAPE => {
                let text = value.to_string();
                let text = if value.is_safe() {
                    text
                } else {
                    telegram::escape(&text)
                };
                out.write_str(&text).map_err(minijinja::Error::from)
            }
            _ => minijinja::escape_formatter(out, state, value),
        });
        env.add_filter("localtime", move |value: String, format: Option<String>| {
            local_time(&value, format.as_deref(), &tz)
        });
        // How long ago a time was, compactly ("4 min", "3 h", "2 d"), for the console.
        env.add_filter("ago", |value: String| -> String {
            let Ok(t) = value.parse::<Timestamp>() else {
                return value;
            };
            let secs = Timestamp::now().duration_since(t).as_secs().max(0);
            match secs {
                0..60 => format!("{secs} s"),
                60..3600 => format!("{} min", secs / 60),
                3600..86400 => format!("{} h", secs / 3600),
                _ => format!("{} d", secs / 86400),
            }
        });
        for (name, source) in sources {
            if let Err(e) = env.add_template_owned(name.clone(), source) {
                errors.push(describe(&name, &e));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let forms: BTreeMap<ChannelKind, Form> = forms.iter().copied().collect();
        let mut languages: BTreeMap<ChannelKind, BTreeSet<String>> = BTreeMap::new();
        for (&channel, form) in &forms {
            let prefix = format!("{}/", channel.as_str());
            let mut candidates: BTreeSet<String> = BTreeSet::new();
            for (name, _) in env.templates() {
                if let Some(rest) = name.strip_prefix(&prefix)
                    && let Some((lang, _)) = rest.split_once('/')
                {
                    candidates.insert(lang.to_owned());
                }
            }
            let complete = candidates
                .into_iter()
                .filter(|lang| {
                    form.parts().iter().all(|part| {
                        env.get_template(&template_name(channel, lang, part))
                            .is_ok()
                    })
                })
                .collect();
            languages.insert(channel, complete);
        }
        Ok(Renderer {
            env: Arc::new(env),
            forms,
            languages,
            fallback: fallback.clone(),
            sms_fold: true,
            social: social::Limits::default(),
        })
    }

    /// Whether SMS text is folded to GSM-7 where it can be (on unless turned off).
    pub fn with_sms_fold(mut self, fold: bool) -> Renderer {
        self.sms_fold = fold;
        self
    }

    /// The social networks' limits in force.
    pub fn with_social_limits(mut self, limits: social::Limits) -> Renderer {
        self.social = limits;
        self
    }

    pub fn social_limits(&self) -> social::Limits {
        self.social
    }

    /// The template language used for a subscriber language: the language itself, its primary
    /// subtag, or the fallback.
    pub fn language_for(&self, channel: ChannelKind, wanted: &Language) -> Option<String> {
        let available = self.languages.get(&channel)?;
        [
            wanted.as_str(),
            wanted.primary(),
            self.fallback.as_str(),
            self.fallback.primary(),
        ]
        .into_iter()
        .find(|l| available.contains(*l))
        .map(str::to_owned)
    }

    pub fn languages(&self, channel: ChannelKind) -> Vec<String> {
        self.languages
            .get(&channel)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

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
        // kept whole when the rest is cut.
        let sample = manage_url_sample(&ctx.public_url);
        let as_sent = |text: &str| text.replace(MANAGE_URL, &sample);
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

    /// Renders a console page, `web/console/<name>.html.j2`; `ctx` carries `lang`, which picks
    /// the words (`web/<lang>/console.j2`).
    pub fn console(&self, name: &str, ctx: &minijinja::Value) -> Result<String, RenderError> {
        self.with_words(&format!("web/console/{name}.html.j2"), "console", ctx)
    }

    /// Renders a public status page, `web/status/<name>.html.j2`; `ctx` carries `lang`, which
    /// picks the words (`web/<lang>/status.j2`).
    pub fn status_page(&self, name: &str, ctx: &minijinja::Value) -> Result<String, RenderError> {
        self.with_words(&format!("web/status/{name}.html.j2"), "status", ctx)
    }

    fn with_words(
        &self,
        template: &str,
        words: &str,
        ctx: &minijinja::Value,
    ) -> Result<String, RenderError> {
        let lang = ctx
            .get_attr("lang")
            .ok()
            .and_then(|l| l.as_str().map(str::to_owned))
            .unwrap_or_else(|| self.fallback.primary().to_owned());
        let words_name = format!("web/{lang}/{words}.j2");
        let fail = |e: minijinja::Error| RenderError::Template {
            name: words_name.clone(),
            detail: describe(&words_name, &e),
        };
        let words = self
            .env
            .get_template(&words_name)
            .map_err(fail)?
            .render_captured(minijinja::context! {})
            .map_err(fail)?
            .state()
            .lookup("w")
            .unwrap_or_default();
        let ctx = minijinja::context! { w => words, ..ctx.clone() };
        self.render_named(template, &ctx)
    }

    /// Renders a web page, `web/<language>/<name>.html.j2`, in the language or the fallback.
    pub fn page<S: serde::Serialize>(
        &self,
        name: &str,
        language: &str,
        ctx: S,
    ) -> Result<String, RenderError> {
        let wanted = format!("web/{language}/{name}.html.j2");
        let template_name = if self.env.get_template(&wanted).is_ok() {
            wanted
        } else {
            format!("web/{}/{name}.html.j2", self.fallback.primary())
        };
        self.render_named(
            &template_name,
            &minijinja::Value::from(minijinja::value::Serde(ctx)),
        )
    }

    fn render_named(&self, name: &str, value: &minijinja::Value) -> Result<String, RenderError> {
        let fail = |e: minijinja::Error| RenderError::Template {
            name: name.to_owned(),
            detail: describe(name, &e),
        };
        self.env
            .get_template(name)
            .map_err(fail)?
            .render(value)
            .map_err(fail)
    }

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
                    // The public audience's text also carries the preferences link.
                    for (kind, public) in [
                        (UpdateKind::Opened, false),
                        (UpdateKind::Resolved, false),
                        (UpdateKind::Opened, true),
                        (UpdateKind::Resolved, true),
                    ] {
                        let mut ctx = sample_context(kind);
                        ctx.signals.clear();
                        if public {
                            ctx.audience = "public".into();
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
                incidents => true, subscribers => true,
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
        "origin": "api", "addresses": [{"channel": "email", "address": "cup@asl.example", "state": "active"}],
        "subscriptions": [{"matchers": ["service=~\"cup.*\""], "min_severity": "warning"}]});
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
        ("audit", json!({"entries": [entry]})),
        (
            "subscribers",
            json!({"subscribers": [subscriber], "citizens": 1250}),
        ),
        (
            "me",
            json!({"linked": false, "link": {"url": "https://t.me/b?start=u_1_2_x", "command": "/start u_1_2_x"}}),
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
    vec![
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

pub fn template_name(channel: ChannelKind, language: &str, part: &str) -> String {
    format!("{}/{language}/{part}.j2", channel.as_str())
}

fn single_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn describe(name: &str, e: &minijinja::Error) -> String {
    let mut out = match e.line() {
        Some(line) => format!("{name} line {line}: {}", e.kind()),
        None => format!("{name}: {}", e.kind()),
    };
    if let Some(detail) = e.detail() {
        out.push_str(": ");
        out.push_str(detail);
    }
    if e.kind() == ErrorKind::OutOfFuel {
        out.push_str(" (the template does too much work; is there a runaway loop?)");
    }
    out
}

fn local_time(
    value: &str,
    format: Option<&str>,
    tz: &TimeZone,
) -> Result<String, minijinja::Error> {
    let ts: Timestamp = value.parse().map_err(|e| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("localtime: `{value}` is not a timestamp: {e}"),
        )
    })?;
    let zoned = ts.to_zoned_datetime(tz.clone());
    let format = format.unwrap_or("%d/%m/%Y %H:%M %Z");
    let mut out = String::new();
    use std::fmt::Write;
    write!(out, "{}", zoned.strftime(format)).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("localtime: bad format `{format}`"),
        )
    })?;
    Ok(out)
}

fn collect_built_in(dir: &Dir<'_>, out: &mut BTreeMap<String, String>) {
    for file in dir.files() {
        let name = file.path().to_string_lossy().replace('\\', "/");
        if name.ends_with(".j2")
            && let Some(text) = file.contents_utf8()
        {
            out.insert(name, text.to_owned());
        }
    }
    for sub in dir.dirs() {
        collect_built_in(sub, out);
    }
}

fn collect_dir(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_dir(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "j2") {
            let name = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            out.insert(name, std::fs::read_to_string(&path)?);
        }
    }
    Ok(())
}

/// Per-recipient values, written into the rendered text at send time.
pub struct Placeholders<'a> {
    pub recipient_name: &'a str,
    pub unsubscribe_url: &'a str,
    pub manage_url: &'a str,
}

pub const RECIPIENT_NAME: &str = "@@BANDITORE_RECIPIENT_NAME@@";
pub const UNSUBSCRIBE_URL: &str = "@@BANDITORE_UNSUBSCRIBE_URL@@";
pub const MANAGE_URL: &str = "@@BANDITORE_MANAGE_URL@@";

/// The longest a preferences link gets beyond `server.public_url`: `/manage/`, an address id and
/// a 22-character signature. Texts with a length limit keep room for it.
const MANAGE_PATH_ROOM: usize = "/manage/".len() + 19 + 1 + 22;

/// A stand-in for the preferences link, as long as the longest real one, to measure texts by.
fn manage_url_sample(public_url: &str) -> String {
    format!("{public_url}{}", "m".repeat(MANAGE_PATH_ROOM))
}

impl Placeholders<'_> {
    /// Fills plain text.
    pub fn fill(&self, text: &str) -> String {
        text.replace(RECIPIENT_NAME, self.recipient_name)
            .replace(UNSUBSCRIBE_URL, self.unsubscribe_url)
            .replace(MANAGE_URL, self.manage_url)
    }

    /// Fills HTML, escaping the values.
    pub fn fill_html(&self, html: &str) -> String {
        let name = minijinja::HtmlEscape(self.recipient_name).to_string();
        let url = minijinja::HtmlEscape(self.unsubscribe_url).to_string();
        let manage = minijinja::HtmlEscape(self.manage_url).to_string();
        html.replace(RECIPIENT_NAME, &name)
            .replace(UNSUBSCRIBE_URL, &url)
            .replace(MANAGE_URL, &manage)
    }

    /// Fills a message body written in `markup`.
    pub fn fill_as(&self, body: &str, markup: Markup) -> String {
        match markup {
            Markup::Plain => self.fill(body),
            Markup::Html => self.fill_html(body),
            Markup::TelegramHtml => body
                .replace(RECIPIENT_NAME, &telegram::escape(self.recipient_name))
                .replace(UNSUBSCRIBE_URL, &telegram::escape(self.unsubscribe_url))
                .replace(MANAGE_URL, &telegram::escape(self.manage_url)),
        }
    }
}

/// How a channel's message body is written, for filling placeholders into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    Plain,
    Html,
    TelegramHtml,
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::*;

    fn renderer() -> Renderer {
        let it = Language::try_from("it".to_owned()).unwrap();
        let tz = TimeZone::get("Europe/Rome").unwrap();
        Renderer::new(Path::new(""), &it, tz, &crate::channel::forms()).unwrap()
    }

    #[test]
    fn built_in_templates_pass_the_check() {
        assert_eq!(renderer().check(), Vec::<String>::new());
    }

    #[test]
    fn italian_and_english_are_shipped() {
        let r = renderer();
        assert_eq!(r.languages(ChannelKind::Email), vec!["en", "it"]);
        let en_gb = Language::try_from("en-GB".to_owned()).unwrap();
        assert_eq!(
            r.language_for(ChannelKind::Email, &en_gb).as_deref(),
            Some("en")
        );
        let fr = Language::try_from("fr".to_owned()).unwrap();
        assert_eq!(
            r.language_for(ChannelKind::Email, &fr).as_deref(),
            Some("it")
        );
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let r = renderer();
        let mut ctx = sample_context(UpdateKind::Opened);
        ctx.incident.title = "CUP <giù> & \"lento\"".into();
        let it = Language::try_from("it".to_owned()).unwrap();
        let out = r.render(ChannelKind::Email, &it, &ctx).unwrap();
        assert!(out.text.contains("CUP <giù> & \"lento\""), "{}", out.text);
        let html = out.html.unwrap();
        assert!(
            html.contains("CUP &lt;giù&gt; &amp; &quot;lento&quot;"),
            "{html}"
        );
        assert!(!html.contains("<giù>"));
        assert!(out.subject.unwrap().contains("CUP <giù>"));
    }

    #[test]
    fn times_are_shown_in_the_deployment_zone() {
        let r = renderer();
        let ctx = sample_context(UpdateKind::Opened);
        let it = Language::try_from("it".to_owned()).unwrap();
        let out = r.render(ChannelKind::Email, &it, &ctx).unwrap();
        // The sample opens at 09:14 UTC on 19 July, 11:14 in Rome (CEST).
        assert!(out.text.contains("11:14"), "{}", out.text);
    }

    #[test]
    fn override_dir_replaces_one_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("email/it")).unwrap();
        std::fs::write(
            dir.path().join("email/it/subject.j2"),
            "Avviso {{ incident.id }}",
        )
        .unwrap();
        let it = Language::try_from("it".to_owned()).unwrap();
        let r = Renderer::new(dir.path(), &it, TimeZone::UTC, &crate::channel::forms()).unwrap();
        let out = r
            .render(ChannelKind::Email, &it, &sample_context(UpdateKind::Opened))
            .unwrap();
        assert_eq!(out.subject.as_deref(), Some("Avviso 42"));
        assert!(out.text.contains("CUP"));
    }

    #[test]
    fn broken_template_is_reported_with_its_name_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("email/en")).unwrap();
        std::fs::write(
            dir.path().join("email/en/text.j2"),
            "line one\n{{ incident.nosuchfield }}\n",
        )
        .unwrap();
        let it = Language::try_from("it".to_owned()).unwrap();
        let r = Renderer::new(dir.path(), &it, TimeZone::UTC, &crate::channel::forms()).unwrap();
        let problems = r.check();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("email/en/text.j2 line 2")),
            "{problems:?}"
        );
    }

    #[test]
    fn syntax_error_is_reported_at_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("email/it")).unwrap();
        std::fs::write(dir.path().join("email/it/subject.j2"), "{% if %}").unwrap();
        let it = Language::try_from("it".to_owned()).unwrap();
        let errors = Renderer::new(dir.path(), &it, TimeZone::UTC, &crate::channel::forms())
            .err()
            .unwrap();
        assert!(errors[0].contains("email/it/subject.j2"), "{errors:?}");
    }

    #[test]
    fn runaway_template_runs_out_of_fuel() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("email/it")).unwrap();
        std::fs::write(
            dir.path().join("email/it/text.j2"),
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap();
        let it = Language::try_from("it".to_owned()).unwrap();
        let r = Renderer::new(dir.path(), &it, TimeZone::UTC, &crate::channel::forms()).unwrap();
        let err = r
            .render(ChannelKind::Email, &it, &sample_context(UpdateKind::Opened))
            .unwrap_err();
        assert!(err.to_string().contains("runaway"), "{err}");
    }

    #[test]
    fn placeholders_fill_per_part() {
        let p = Placeholders {
            recipient_name: "CUP <Foligno>",
            unsubscribe_url: "https://x/u/a?b&c",
            manage_url: "https://x/manage/1.s",
        };
        assert_eq!(
            p.fill(&format!(
                "Ciao {RECIPIENT_NAME} {UNSUBSCRIBE_URL} {MANAGE_URL}"
            )),
            "Ciao CUP <Foligno> https://x/u/a?b&c https://x/manage/1.s"
        );
        let html = p.fill_html(&format!(
            "<a href=\"{UNSUBSCRIBE_URL}\">{RECIPIENT_NAME}</a>"
        ));
        assert!(html.contains("CUP &lt;Foligno&gt;"));
        assert!(html.contains("a?b&amp;c"));
    }

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
    fn check_reports_an_sms_template_that_cannot_fit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sms/it")).unwrap();
        std::fs::write(
            dir.path().join("sms/it/text.j2"),
            format!(
                "{{% set max_segments = 1 %}}{{{{ incident.title }}}} {}",
                "x".repeat(200)
            ),
        )
        .unwrap();
        let it = Language::try_from("it".to_owned()).unwrap();
        let r = Renderer::new(dir.path(), &it, TimeZone::UTC, &crate::channel::forms()).unwrap();
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
    fn check_renders_every_console_page_and_reports_a_broken_one() {
        assert!(renderer().check().is_empty(), "{:#?}", renderer().check());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("web/console")).unwrap();
        std::fs::write(
            dir.path().join("web/console/drafts.html.j2"),
            "{{ page.pending[0].no_such_field.x }}",
        )
        .unwrap();
        let it = Language::try_from("it".to_owned()).unwrap();
        let r = Renderer::new(dir.path(), &it, TimeZone::UTC, &crate::channel::forms()).unwrap();
        let problems = r.check();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("web/console/drafts.html.j2")),
            "{problems:#?}"
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
    }
}
