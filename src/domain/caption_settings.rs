//! Caption generation settings, per person and platform connection. Every bound lives here: a
//! `CaptionSettings` is valid for the connection it was parsed for, by construction.

use serde::{Deserialize, Serialize};

pub const MAX_POSTS_PER_RUN: u32 = 500;
pub const MIN_CAPTION_LENGTH: u32 = 50;
pub const MIN_OPTIMAL_LENGTH: u32 = 10;
pub const MAX_PROCESSING_DELAY: f64 = 60.0;
/// The largest description limit of any instance: the ceiling of system-wide defaults.
pub const LARGEST_INSTANCE_LIMIT: u32 = 1500;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaptionSettings {
    pub max_posts_per_run: u32,
    pub max_caption_length: u32,
    pub optimal_min_length: u32,
    pub optimal_max_length: u32,
    pub reprocess_existing: bool,
    /// Seconds between posts.
    pub processing_delay: f64,
}

impl CaptionSettings {
    /// The system-wide defaults (DESIGN.md's table).
    pub fn defaults() -> CaptionSettings {
        CaptionSettings {
            max_posts_per_run: 50,
            max_caption_length: 500,
            optimal_min_length: 80,
            optimal_max_length: 200,
            reprocess_existing: false,
            processing_delay: 1.0,
        }
    }

    /// These settings as they apply on a connection whose instance allows `limit` characters.
    pub fn clamped_to(&self, limit: u32) -> CaptionSettings {
        let max_caption_length = self.max_caption_length.min(limit.max(MIN_CAPTION_LENGTH));
        let optimal_max_length = self.optimal_max_length.min(max_caption_length);
        CaptionSettings {
            max_caption_length,
            optimal_max_length,
            optimal_min_length: self.optimal_min_length.min(optimal_max_length),
            ..self.clone()
        }
    }

    /// The delay in whole milliseconds, as stored.
    pub fn delay_ms(&self) -> i32 {
        (self.processing_delay * 1000.0).round() as i32
    }
}

/// A field name (as in forms and JSON) and what is wrong with it.
pub type FieldError = (&'static str, String);

/// The submitted values, as text (forms) or JSON values turned to text.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RawSettings {
    pub max_posts_per_run: Option<String>,
    pub max_caption_length: Option<String>,
    pub optimal_min_length: Option<String>,
    pub optimal_max_length: Option<String>,
    pub reprocess_existing: Option<String>,
    pub processing_delay: Option<String>,
}

pub const LABELS: [(&str, &str); 6] = [
    ("max_posts_per_run", "Posts per run"),
    ("max_caption_length", "Maximum description length"),
    ("optimal_min_length", "Shortest preferred length"),
    ("optimal_max_length", "Longest preferred length"),
    ("reprocess_existing", "Redo fedialt's earlier descriptions"),
    ("processing_delay", "Pause between posts"),
];

pub fn label(field: &str) -> &'static str {
    LABELS
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, l)| *l)
        .unwrap_or("This field")
}

fn whole(
    errors: &mut Vec<FieldError>,
    field: &'static str,
    raw: &Option<String>,
    min: u32,
    max: u32,
    rule: &str,
) -> Option<u32> {
    let Some(text) = raw.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
        errors.push((field, format!("{} is required: {rule}.", label(field))));
        return None;
    };
    match text.parse::<i64>() {
        Ok(n) if n >= i64::from(min) && n <= i64::from(max) => Some(n as u32),
        Ok(_) => {
            errors.push((field, format!("{} must be {rule}.", label(field))));
            None
        }
        Err(_) => {
            errors.push((
                field,
                format!("{} must be a whole number: {rule}.", label(field)),
            ));
            None
        }
    }
}

fn checkbox(raw: &Option<String>) -> Result<bool, ()> {
    match raw.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(s) if matches!(s.as_str(), "" | "false" | "0" | "off" | "no") => Ok(false),
        Some(s) if matches!(s.as_str(), "on" | "true" | "1" | "yes") => Ok(true),
        Some(_) => Err(()),
    }
}

impl RawSettings {
    /// The fields of a JSON object: numbers, strings and booleans as text, null or absent as not
    /// sent. Err names the first field of another JSON type.
    pub fn from_json(
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<RawSettings, &'static str> {
        use serde_json::Value;
        let field = |name: &'static str| match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(name),
        };
        Ok(RawSettings {
            max_posts_per_run: field("max_posts_per_run")?,
            max_caption_length: field("max_caption_length")?,
            optimal_min_length: field("optimal_min_length")?,
            optimal_max_length: field("optimal_max_length")?,
            reprocess_existing: field("reprocess_existing")?,
            processing_delay: field("processing_delay")?,
        })
    }

    /// Fills the fields that were not sent with `current` (the JSON API updates what it names).
    pub fn or_current(self, current: &CaptionSettings) -> RawSettings {
        RawSettings {
            max_posts_per_run: self
                .max_posts_per_run
                .or(Some(current.max_posts_per_run.to_string())),
            max_caption_length: self
                .max_caption_length
                .or(Some(current.max_caption_length.to_string())),
            optimal_min_length: self
                .optimal_min_length
                .or(Some(current.optimal_min_length.to_string())),
            optimal_max_length: self
                .optimal_max_length
                .or(Some(current.optimal_max_length.to_string())),
            reprocess_existing: self
                .reprocess_existing
                .or(Some(current.reprocess_existing.to_string())),
            processing_delay: self
                .processing_delay
                .or(Some(current.processing_delay.to_string())),
        }
    }

    pub fn from_settings(s: &CaptionSettings) -> RawSettings {
        RawSettings::default().or_current(s)
    }

    /// Every field's problem at once; `limit` is the connection's description limit.
    pub fn parse(&self, limit: u32) -> Result<CaptionSettings, Vec<FieldError>> {
        let mut errors = Vec::new();
        let limit = limit.max(MIN_CAPTION_LENGTH);
        let posts = whole(
            &mut errors,
            "max_posts_per_run",
            &self.max_posts_per_run,
            1,
            MAX_POSTS_PER_RUN,
            &format!("from 1 to {MAX_POSTS_PER_RUN}"),
        );
        let max_len = whole(
            &mut errors,
            "max_caption_length",
            &self.max_caption_length,
            MIN_CAPTION_LENGTH,
            limit,
            &format!("from {MIN_CAPTION_LENGTH} to {limit}, this instance's description limit"),
        );
        let cap = max_len.unwrap_or(limit);
        let opt_max = whole(
            &mut errors,
            "optimal_max_length",
            &self.optimal_max_length,
            MIN_OPTIMAL_LENGTH,
            cap,
            &format!("from {MIN_OPTIMAL_LENGTH} to the maximum description length ({cap})"),
        );
        let upper = opt_max.unwrap_or(cap);
        let opt_min = whole(
            &mut errors,
            "optimal_min_length",
            &self.optimal_min_length,
            MIN_OPTIMAL_LENGTH,
            upper,
            &format!("from {MIN_OPTIMAL_LENGTH} to the longest preferred length ({upper})"),
        );
        let reprocess = match checkbox(&self.reprocess_existing) {
            Ok(b) => Some(b),
            Err(()) => {
                errors.push((
                    "reprocess_existing",
                    format!("{} must be on or off.", label("reprocess_existing")),
                ));
                None
            }
        };
        let delay = match self
            .processing_delay
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            None => {
                errors.push((
                    "processing_delay",
                    format!(
                        "{} is required: seconds from 0 to 60.",
                        label("processing_delay")
                    ),
                ));
                None
            }
            Some(text) => match text.parse::<f64>() {
                Ok(d) if d.is_finite() && (0.0..=MAX_PROCESSING_DELAY).contains(&d) => Some(d),
                _ => {
                    errors.push((
                        "processing_delay",
                        format!(
                            "{} must be a number of seconds from 0 to 60.",
                            label("processing_delay")
                        ),
                    ));
                    None
                }
            },
        };
        match (posts, max_len, opt_min, opt_max, reprocess, delay) {
            (Some(p), Some(m), Some(lo), Some(hi), Some(r), Some(d)) if errors.is_empty() => {
                Ok(CaptionSettings {
                    max_posts_per_run: p,
                    max_caption_length: m,
                    optimal_min_length: lo,
                    optimal_max_length: hi,
                    reprocess_existing: r,
                    processing_delay: (d * 1000.0).round() / 1000.0,
                })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(p: &str, m: &str, lo: &str, hi: &str, r: Option<&str>, d: &str) -> RawSettings {
        RawSettings {
            max_posts_per_run: Some(p.into()),
            max_caption_length: Some(m.into()),
            optimal_min_length: Some(lo.into()),
            optimal_max_length: Some(hi.into()),
            reprocess_existing: r.map(Into::into),
            processing_delay: Some(d.into()),
        }
    }

    fn fields(e: Vec<FieldError>) -> Vec<&'static str> {
        e.into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn defaults_parse_everywhere() {
        let d = CaptionSettings::defaults();
        assert_eq!(RawSettings::from_settings(&d).parse(1500).unwrap(), d);
        assert_eq!(RawSettings::from_settings(&d).parse(500).unwrap(), d);
        assert_eq!(d.clamped_to(420).max_caption_length, 420);
        assert_eq!(d.clamped_to(150).optimal_max_length, 150);
        assert_eq!(d.clamped_to(60).optimal_min_length, 60);
    }

    #[test]
    fn each_bound() {
        assert_eq!(
            fields(
                raw("0", "500", "80", "200", None, "1")
                    .parse(1500)
                    .unwrap_err()
            ),
            ["max_posts_per_run"]
        );
        assert_eq!(
            fields(
                raw("501", "500", "80", "200", None, "1")
                    .parse(1500)
                    .unwrap_err()
            ),
            ["max_posts_per_run"]
        );
        assert_eq!(
            fields(
                raw("5", "49", "20", "40", None, "1")
                    .parse(1500)
                    .unwrap_err()
            ),
            ["max_caption_length"]
        );
        assert_eq!(
            fields(
                raw("5", "1001", "80", "200", None, "1")
                    .parse(1000)
                    .unwrap_err()
            ),
            ["max_caption_length"]
        );
        assert_eq!(
            fields(
                raw("5", "500", "9", "200", None, "1")
                    .parse(1500)
                    .unwrap_err()
            ),
            ["optimal_min_length"]
        );
        assert_eq!(
            fields(
                raw("5", "500", "300", "200", None, "1")
                    .parse(1500)
                    .unwrap_err()
            ),
            ["optimal_min_length"]
        );
        assert_eq!(
            fields(
                raw("5", "300", "80", "301", None, "1")
                    .parse(1500)
                    .unwrap_err()
            ),
            ["optimal_max_length"]
        );
        assert_eq!(
            fields(
                raw("5", "500", "80", "200", None, "60.5")
                    .parse(1500)
                    .unwrap_err()
            ),
            ["processing_delay"]
        );
        assert_eq!(
            fields(
                raw("5", "500", "80", "200", None, "NaN")
                    .parse(1500)
                    .unwrap_err()
            ),
            ["processing_delay"]
        );
        assert_eq!(
            fields(
                raw("5", "500", "80", "200", None, "inf")
                    .parse(1500)
                    .unwrap_err()
            ),
            ["processing_delay"]
        );
        assert_eq!(
            fields(
                raw("5", "500", "80", "200", Some("maybe"), "1")
                    .parse(1500)
                    .unwrap_err()
            ),
            ["reprocess_existing"]
        );
        let all = raw("x", "", "a", "b", None, "-1").parse(1500).unwrap_err();
        assert_eq!(all.len(), 5);
        assert!(all[0].1.starts_with("Posts per run must be a whole number"));
    }

    #[test]
    fn good_values() {
        let s = raw("500", "1000", "10", "1000", Some("on"), "0")
            .parse(1000)
            .unwrap();
        assert!(s.reprocess_existing);
        assert_eq!(s.max_posts_per_run, 500);
        assert_eq!(
            raw("1", "50", "10", "10", None, "60")
                .parse(1500)
                .unwrap()
                .processing_delay,
            60.0
        );
    }
}
