//! Tera templates, embedded in the binary so it runs from any directory.

use std::cell::RefCell;

use actix_web::web::Bytes;

use include_dir::{include_dir, Dir};
use tera::Tera;

use crate::memo::BoundedMemo;

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

/// Renders `name` with the templates built at start (AppState::templates).
pub fn render(tera: &Tera, name: &str, context: &tera::Context) -> Result<String, String> {
    tera.render(name, context).map_err(|e| {
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

/// Pages (with their key) bigger than this are rendered every time.
const MEMO_MAX_PAGE: usize = 64 * 1024;
/// Keys and pages kept per thread; past it the memo starts empty.
const MEMO_BUDGET: usize = 4 * 1024 * 1024;

thread_local! {
    /// Rendered pages by their whole input: the context's JSON text, a NUL (which JSON text
    /// never holds raw), and the template's name. A render is a pure function of these, so an
    /// entry is never stale; each HTTP worker thread keeps its own, so no locks.
    static MEMO: RefCell<BoundedMemo<Vec<u8>, Bytes>> =
        RefCell::new(BoundedMemo::new(MEMO_BUDGET, MEMO_MAX_PAGE));
}

/// Renders `name` with the context given as a JSON object's text, reusing the page rendered for
/// the same template and text before.
pub fn render_memoized(
    tera: &Tera,
    name: &str,
    mut context_json: Vec<u8>,
) -> Result<Bytes, String> {
    let json_len = context_json.len();
    context_json.push(0);
    context_json.extend_from_slice(name.as_bytes());
    let key = context_json;
    if let Some(page) = MEMO.with_borrow(|memo| memo.get(&key).cloned()) {
        return Ok(page);
    }
    let value: serde_json::Value = serde_json::from_slice(&key[..json_len])
        .map_err(|e| format!("the page context is not JSON: {e}"))?;
    let context = tera::Context::from_value(value).map_err(|e| e.to_string())?;
    let page = Bytes::from(render(tera, name, &context)?);
    let size = key.len() + page.len();
    MEMO.with_borrow_mut(|memo| memo.insert(key, page.clone(), size));
    Ok(page)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_parses() {
        super::build().unwrap();
    }

    fn context(title: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "title": title, "heading": title, "message": "m", "status": 404, "flashes": []
        }))
        .unwrap()
    }

    #[test]
    fn the_memo_serves_the_same_page_for_the_same_input_only() {
        let tera = super::build().unwrap();
        let first = super::render_memoized(&tera, "errors/error.html", context("First")).unwrap();
        let again = super::render_memoized(&tera, "errors/error.html", context("First")).unwrap();
        let other = super::render_memoized(&tera, "errors/error.html", context("Other")).unwrap();
        // The second render of the same input is the memo's own copy, not a new string.
        assert_eq!(first.as_ptr(), again.as_ptr());
        assert!(String::from_utf8_lossy(&first).contains("First"));
        assert!(String::from_utf8_lossy(&other).contains("Other"));
        assert!(!String::from_utf8_lossy(&other).contains("First"));
    }

    #[test]
    fn the_memo_stays_within_its_budget() {
        let tera = super::build().unwrap();
        for i in 0..(2 * super::MEMO_BUDGET / 1024) {
            super::render_memoized(&tera, "errors/error.html", context(&format!("page {i}")))
                .unwrap();
        }
        super::MEMO.with_borrow(|memo| {
            assert!(memo.bytes() <= super::MEMO_BUDGET);
            assert!(!memo.is_empty());
        });
    }
}
