//! Rendering: incident updates into channel text, from the templates under `templates/`.
//!
//! Templates are `templates/<channel>/<language>/<part>.j2` (for email the parts are `subject`,
//! `text` and `html`). The ones shipped are compiled into the binary; a directory given as
//! `templates.dir` replaces any of them file by file. Rendering happens once per update, channel,
//! language and audience; the few per-recipient parts are left as placeholders that
//! [`Placeholders::fill`] substitutes at send time, so a fan-out to thousands costs one render.

mod context;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use include_dir::{Dir, include_dir};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use crate::domain::UpdateKind;
use crate::domain::subscriber::{ChannelKind, Language};

pub use context::{IncidentView, MessageContext, SignalView, UpdateView, sample_context};

static BUILT_IN: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

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

/// The channel parts that each template folder must provide.
fn parts(channel: ChannelKind) -> &'static [&'static str] {
    match channel {
        ChannelKind::Email => &["subject", "text", "html"],
    }
}

#[derive(Clone)]
pub struct Renderer {
    env: Arc<Environment<'static>>,
    /// Languages with a complete template folder, per channel.
    languages: BTreeMap<ChannelKind, BTreeSet<String>>,
    fallback: Language,
}

impl Renderer {
    /// Loads the built-in templates, then the files under `dir` (if not empty) over them.
    pub fn new(dir: &Path, fallback: &Language, tz: TimeZone) -> Result<Renderer, Vec<String>> {
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
            if name.ends_with("html.j2") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.add_filter("localtime", move |value: String, format: Option<String>| {
            local_time(&value, format.as_deref(), &tz)
        });
        for (name, source) in sources {
            if let Err(e) = env.add_template_owned(name.clone(), source) {
                errors.push(describe(&name, &e));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut languages: BTreeMap<ChannelKind, BTreeSet<String>> = BTreeMap::new();
        for channel in ChannelKind::ALL {
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
                    parts(channel).iter().all(|part| {
                        env.get_template(&template_name(channel, lang, part))
                            .is_ok()
                    })
                })
                .collect();
            languages.insert(channel, complete);
        }
        Ok(Renderer {
            env: Arc::new(env),
            languages,
            fallback: fallback.clone(),
        })
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
        let rendered = match channel {
            ChannelKind::Email => Rendered {
                subject: Some(single_line(&render("subject")?)),
                text: render("text")?,
                html: Some(render("html")?),
                language,
            },
        };
        Ok(rendered)
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
        for channel in ChannelKind::ALL {
            let langs = self.languages(channel);
            if langs.is_empty() {
                problems.push(format!(
                    "{channel}: no complete template folder ({} needed)",
                    parts(channel).join(", ")
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
            }
        }
        problems
    }
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
}

pub const RECIPIENT_NAME: &str = "@@BANDITORE_RECIPIENT_NAME@@";
pub const UNSUBSCRIBE_URL: &str = "@@BANDITORE_UNSUBSCRIBE_URL@@";

impl Placeholders<'_> {
    /// Fills plain text.
    pub fn fill(&self, text: &str) -> String {
        text.replace(RECIPIENT_NAME, self.recipient_name)
            .replace(UNSUBSCRIBE_URL, self.unsubscribe_url)
    }

    /// Fills HTML, escaping the values.
    pub fn fill_html(&self, html: &str) -> String {
        let name = minijinja::HtmlEscape(self.recipient_name).to_string();
        let url = minijinja::HtmlEscape(self.unsubscribe_url).to_string();
        html.replace(RECIPIENT_NAME, &name)
            .replace(UNSUBSCRIBE_URL, &url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer() -> Renderer {
        let it = Language::try_from("it".to_owned()).unwrap();
        let tz = TimeZone::get("Europe/Rome").unwrap();
        Renderer::new(Path::new(""), &it, tz).unwrap()
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
        let r = Renderer::new(dir.path(), &it, TimeZone::UTC).unwrap();
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
        let r = Renderer::new(dir.path(), &it, TimeZone::UTC).unwrap();
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
        let errors = Renderer::new(dir.path(), &it, TimeZone::UTC).err().unwrap();
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
        let r = Renderer::new(dir.path(), &it, TimeZone::UTC).unwrap();
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
        };
        assert_eq!(
            p.fill(&format!("Ciao {RECIPIENT_NAME} {UNSUBSCRIBE_URL}")),
            "Ciao CUP <Foligno> https://x/u/a?b&c"
        );
        let html = p.fill_html(&format!(
            "<a href=\"{UNSUBSCRIBE_URL}\">{RECIPIENT_NAME}</a>"
        ));
        assert!(html.contains("CUP &lt;Foligno&gt;"));
        assert!(html.contains("a?b&amp;c"));
    }
}
