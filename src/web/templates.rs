//! Tera templates, embedded in the binary so it runs from any directory.

use std::sync::OnceLock;

use include_dir::{include_dir, Dir};
use tera::Tera;

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

fn collect(dir: &'static Dir<'static>, out: &mut Vec<(String, &'static str)>) {
    for file in dir.files() {
        if let Some(text) = file.contents_utf8() {
            out.push((file.path().display().to_string(), text));
        }
    }
    for sub in dir.dirs() {
        collect(sub, out);
    }
}

pub fn build() -> Result<Tera, tera::Error> {
    let mut files = Vec::new();
    collect(&TEMPLATES, &mut files);
    let mut tera = Tera::default();
    tera.add_raw_templates(files)?;
    tera.autoescape_on(vec![".html"]);
    Ok(tera)
}

/// The templates, parsed once. Error pages are rendered from places that have no app state.
pub fn tera() -> Result<&'static Tera, String> {
    static TERA: OnceLock<Result<Tera, String>> = OnceLock::new();
    TERA.get_or_init(|| build().map_err(|e| format!("{e:?}")))
        .as_ref()
        .map_err(Clone::clone)
}

pub fn render(name: &str, context: &tera::Context) -> Result<String, String> {
    tera()?.render(name, context).map_err(|e| {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        message
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_parses() {
        super::build().unwrap();
    }
}
