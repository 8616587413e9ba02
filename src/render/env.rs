//! The template environment: the built-in templates compiled into the binary, the files of
//! `templates.dir` over them, and how minijinja is set up to render them (Telegram's own escaping
//! beside HTML's, fuel against runaway loops, the `localtime` and `ago` filters). It also knows
//! which languages each channel has a complete folder for, and turns minijinja's errors into
//! messages that name the template and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use include_dir::{Dir, include_dir};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use super::{RenderError, Renderer, social, telegram};
use crate::domain::subscriber::{ChannelKind, Language};

static BUILT_IN: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Auto-escaping for Telegram templates: Telegram HTML escapes fewer characters than HTML does.
const TELEGRAM_ESCAPE: &str = "telegram-html";

/// Fuel bounds the work one render may do, so that a looping template fails instead of hanging.
const FUEL: u64 = 200_000;

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
    /// App IO: a subject and a Markdown body, each fitted to App IO's lengths.
    AppIo,
    /// Named one-line fields (a WhatsApp template's parameters), written one a line as
    /// `name: value`.
    Fields,
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
            Form::AppIo => &["subject", "markdown"],
            Form::Fields => &["title", "services", "text"],
        }
    }
}

impl Renderer {
    /// Loads the built-in templates, then the files under `dir` (if not empty) over them, and
    /// checks which languages each channel of `forms` has complete.
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
        // A monitor's or an operator's words in App IO's Markdown, read as words only.
        env.add_filter("markdown", |value: String| super::appio::escape(&value));
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
        // Templates are strict about undefined names: the reply word is always defined, none
        // unless `with_sms_reply_word` says otherwise.
        env.add_global("sms_reply_word", minijinja::Value::from(()));
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

    /// The word a desk replies to a text to say it has seen it (`channels.sms.replies`), for
    /// the SMS templates' invitation (`sms_reply_word`); none when replies are off.
    pub fn with_sms_reply_word(mut self, word: Option<String>) -> Renderer {
        if let Some(env) = Arc::get_mut(&mut self.env) {
            env.add_global("sms_reply_word", minijinja::Value::from(word));
        }
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

    pub(super) fn render_named(
        &self,
        name: &str,
        value: &minijinja::Value,
    ) -> Result<String, RenderError> {
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
}

pub fn template_name(channel: ChannelKind, language: &str, part: &str) -> String {
    format!("{}/{language}/{part}.j2", channel.as_str())
}

pub(super) fn describe(name: &str, e: &minijinja::Error) -> String {
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

#[cfg(test)]
mod tests {

    use super::*;
    use crate::domain::UpdateKind;
    use crate::render::sample_context;
    use crate::render::testing::renderer;

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
}
