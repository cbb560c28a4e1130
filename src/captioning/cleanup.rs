//! How a model's answer is made fit to publish: preambles ("Sure! Here is…"), wrapping quotes,
//! markdown, hidden control characters and surplus whitespace go, and the text is cut at a
//! sentence, else a word, boundary to the length limit (counted in Unicode scalar values, as
//! CONTRACT.md says).

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
