//! What the model is asked: alt-text practice (what matters, visible text transcribed, no "image
//! of", no guesses about who people are, only the description, in the post's language) within
//! the person's length budget. What it answers is made fit to publish by `cleanup`.

use crate::domain::CaptionSettings;

/// The post's text given as context is cut to this many characters.
const CONTEXT_CHARS: usize = 500;

/// Stored on each draft with the model's name: which wording of the prompt made it.
pub const VERSION: i32 = 1;

/// The language's English name, for the prompt (models follow "German" better than "de").
pub fn language_name(code: &str) -> Option<&'static str> {
    let primary = code.split(['-', '_']).next()?.to_ascii_lowercase();
    Some(match primary.as_str() {
        "ar" => "Arabic",
        "ca" => "Catalan",
        "cs" => "Czech",
        "cy" => "Welsh",
        "da" => "Danish",
        "de" => "German",
        "el" => "Greek",
        "en" => "English",
        "eo" => "Esperanto",
        "es" => "Spanish",
        "eu" => "Basque",
        "fa" => "Persian",
        "fi" => "Finnish",
        "fr" => "French",
        "ga" => "Irish",
        "gl" => "Galician",
        "he" => "Hebrew",
        "hi" => "Hindi",
        "hu" => "Hungarian",
        "id" => "Indonesian",
        "it" => "Italian",
        "ja" => "Japanese",
        "ko" => "Korean",
        "nb" | "no" => "Norwegian",
        "nl" => "Dutch",
        "pl" => "Polish",
        "pt" => "Portuguese",
        "ro" => "Romanian",
        "ru" => "Russian",
        "sv" => "Swedish",
        "th" => "Thai",
        "tr" => "Turkish",
        "uk" => "Ukrainian",
        "vi" => "Vietnamese",
        "zh" => "Chinese",
        _ => return None,
    })
}

pub fn build(settings: &CaptionSettings, post_text: &str, language: Option<&str>) -> String {
    let mut prompt = format!(
        "Write alt text for this image, for people who use screen readers. Describe what matters \
         in the image and transcribe any text that is visible in it. Do not begin with \"Image of\", \
         \"Picture of\" or \"Photo of\", and do not guess who people are. Aim for {} to {} \
         characters, and never write more than {}. Reply with the description only.",
        settings.optimal_min_length, settings.optimal_max_length, settings.max_caption_length
    );
    match language.map(|code| (code, language_name(code))) {
        Some((code, Some(name))) => {
            prompt.push_str(&format!(" Write it in {name} (language code \"{code}\")."))
        }
        Some((code, None)) => prompt.push_str(&format!(
            " Write it in the language with the code \"{code}\"."
        )),
        None => prompt.push_str(" Write it in the language of the post."),
    }
    let context: String = post_text.chars().take(CONTEXT_CHARS).collect();
    if !context.trim().is_empty() {
        prompt.push_str("\n\nThe post the image belongs to says:\n");
        prompt.push_str(&context);
    }
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_carries_the_budget_language_and_post() {
        let settings = CaptionSettings::defaults();
        let prompt = build(&settings, "At the beach", Some("de"));
        assert!(prompt.contains("80 to 200"));
        assert!(prompt.contains("German (language code \"de\")"), "{prompt}");
        assert!(prompt.contains("At the beach"));
        assert!(prompt.contains("never write more than 500"));
        assert!(prompt.contains("do not guess who people are"));
        assert!(build(&settings, "", Some("xx")).contains("code \"xx\""));
        assert!(build(&settings, "", None).contains("language of the post"));
        assert_eq!(language_name("pt-BR"), Some("Portuguese"));
    }
}
