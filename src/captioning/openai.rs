//! Any OpenAI-compatible chat completions server: `POST {base}/chat/completions` (base includes
//! /v1), the image as a data URL, the key (CAPTION_API_KEY) as a bearer token.

use serde_json::{json, Value};

use super::Backend;

pub struct OpenAi;

impl Backend for OpenAi {
    fn url(&self, base: &str) -> String {
        format!("{base}/chat/completions")
    }

    fn body(&self, model: &str, prompt: &str, image_b64: &str) -> Value {
        json!({
            "model": model,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": format!("data:image/jpeg;base64,{image_b64}")}},
            ]}],
        })
    }

    fn text<'a>(&self, answer: &'a Value) -> Option<&'a str> {
        answer.pointer("/choices/0/message/content")?.as_str()
    }
}
