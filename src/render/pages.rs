//! Web pages: the console's and the public status page's, each template given the words of
//! its language (`web/<lang>/console.j2`, `web/<lang>/status.j2`), and the simpler pages
//! written whole per language (`web/<lang>/<name>.html.j2`).

use super::env::describe;
use super::{RenderError, Renderer};

impl Renderer {
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
}
