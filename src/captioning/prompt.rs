//! What the model is asked, and how its answer is made fit to publish: alt-text practice (what
//! matters, visible text transcribed, no "image of", no guesses about who people are, only the
//! description, in the post's language) within the person's length budget.

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

/// The model's answer as a description: preambles, quotes, markdown and extra whitespace gone,
/// and cut at a sentence or word boundary to at most `max` characters (Unicode scalar values).
pub fn clean(answer: &str, max: usize) -> String {
    let mut text = answer.trim();
    // "Sure! Here is the alt text for the image:" and the like: a first line or sentence that
    // announces the answer instead of being it.
    if let Some(colon) = text.find(':') {
        let head = text[..colon].to_lowercase();
        let head = head.trim();
        let words = [
            "sure",
            "certainly",
            "here is",
            "here's",
            "okay",
            "of course",
            "absolutely",
        ];
        let bare = words
            .iter()
            .any(|w| head.trim_end_matches(['!', '.', ',']) == *w);
        let announces = words.iter().any(|w| head.starts_with(w))
            && head.chars().count() < 120
            && (bare
                || ["alt", "descri", "caption", "here"]
                    .iter()
                    .any(|w| head.contains(w)));
        if announces {
            text = text[colon + 1..].trim_start();
        }
    }
    for preamble in [
        "alt text:",
        "alt-text:",
        "description:",
        "here is the alt text:",
        "here's the alt text:",
    ] {
        if text.len() >= preamble.len()
            && text.is_char_boundary(preamble.len())
            && text[..preamble.len()].eq_ignore_ascii_case(preamble)
        {
            text = text[preamble.len()..].trim_start();
        }
    }
    // Markdown marks go, and so do control and direction-changing characters (a NUL, U+202E):
    // the text is published as it is.
    let text: String = text
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|c| !matches!(c, '*' | '`' | '#') && !crate::domain::is_hidden_control(*c))
        .collect();
    // Markdown list marks and headings, left at the start after the line breaks went.
    let text = text.trim_start_matches(['-', '>', ' ']).to_owned();
    let text = text
        .trim()
        .trim_matches(|c| matches!(c, '"' | '\u{201c}' | '\u{201d}' | '\''))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    cut(&text, max)
}

/// At most `max` characters: the longest run of whole sentences that fits, else whole words.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let head: String = text.chars().take(max).collect();
    if let Some(end) = head.rfind(['.', '!', '?']) {
        if end > 0 {
            return head[..=end].to_owned();
        }
    }
    match head.rfind(' ') {
        Some(space) if space > 0 => head[..space].trim_end().to_owned(),
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_cleaned_and_cut_to_fit() {
        assert_eq!(
            clean("  Alt text: **\"A red fox in snow.\"**  ", 100),
            "A red fox in snow."
        );
        assert_eq!(
            clean("A fox. It sits in the snow and looks up.", 20),
            "A fox."
        );
        assert_eq!(clean("one two three four", 12), "one two");
        assert_eq!(clean("éééé ééé", 6).chars().count(), 4);
        assert_eq!(
            clean("A\u{0} cat\u{202e} sits\n\nquietly.", 100),
            "A cat sits quietly."
        );
    }

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

    #[test]
    fn real_looking_answers_are_cleaned() {
        let answers = [
            (
                "Sure! Here is the alt text for the image:\n\n**A tabby cat** asleep on a red sofa.",
                "A tabby cat asleep on a red sofa.",
            ),
            (
                "Here's a description of the image: \"Two hikers on a ridge at sunset.\"",
                "Two hikers on a ridge at sunset.",
            ),
            ("Certainly: A bowl of ramen with egg.", "A bowl of ramen with egg."),
            ("- A street sign reading `STOP`.", "A street sign reading STOP."),
            ("A chart: sales rose in May.", "A chart: sales rose in May."),
        ];
        for (answer, expected) in answers {
            assert_eq!(clean(answer, 500), expected, "{answer}");
        }
        let long = format!(
            "A very long description. {}",
            "Detail after detail. ".repeat(200)
        );
        let cut = clean(&long, 500);
        assert!(cut.chars().count() <= 500 && cut.ends_with('.'), "{cut}");
    }
}
