//! Ollama's chat API: `POST {base}/api/chat`, the image as bare base64, stream false.

use serde_json::{json, Value};

use super::Backend;

pub struct Ollama;

impl Backend for Ollama {
    fn url(&self, base: &str) -> String {
        format!("{base}/api/chat")
    }

    fn body(&self, model: &str, prompt: &str, image_b64: &str) -> Value {
        json!({
            "model": model,
            "stream": false,
            "messages": [{"role": "user", "content": prompt, "images": [image_b64]}],
        })
    }

    fn text<'a>(&self, answer: &'a Value) -> Option<&'a str> {
        answer.pointer("/message/content")?.as_str()
    }
}
