//! Instance URLs, platform types and connection names.

use url::Url;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformType {
    Mastodon,
    Pixelfed,
}

impl PlatformType {
    pub fn parse(text: &str) -> Result<Option<PlatformType>, String> {
        match text.trim().to_lowercase().as_str() {
            "" | "auto" => Ok(None),
            "mastodon" => Ok(Some(PlatformType::Mastodon)),
            "pixelfed" => Ok(Some(PlatformType::Pixelfed)),
            _ => Err("must be mastodon or pixelfed (or left empty to detect it)".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PlatformType::Mastodon => "mastodon",
            PlatformType::Pixelfed => "pixelfed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            PlatformType::Mastodon => "Mastodon",
            PlatformType::Pixelfed => "Pixelfed",
        }
    }

    /// The description limit when the instance does not say.
    pub fn default_description_limit(self) -> i32 {
        match self {
            PlatformType::Mastodon => 1500,
            PlatformType::Pixelfed => 1000,
        }
    }

    /// OAuth scopes: Mastodon takes the granular ones, Pixelfed only `read write`.
    pub fn oauth_scopes(self) -> &'static str {
        match self {
            PlatformType::Mastodon => "read:accounts read:statuses write:statuses write:media",
            PlatformType::Pixelfed => "read write",
        }
    }
}

/// An instance's origin: scheme, host and port, nothing else. No scheme means https.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceUrl(Url);

impl InstanceUrl {
    /// `allow_http`: plain http is accepted only where private networks are allowed (or the host
    /// is an address exempted from the guard).
    pub fn parse(text: &str, allow_http: impl Fn(&Url) -> bool) -> Result<InstanceUrl, String> {
        let text = text.trim().trim_end_matches('/');
        if text.is_empty() {
            return Err(
                "is required: the address of your instance, such as mastodon.social".into(),
            );
        }
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("https://{text}")
        };
        let url = Url::parse(&with_scheme)
            .map_err(|_| "is not a web address; write it like mastodon.social".to_owned())?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http(&url) => {}
            "http" => {
                return Err(
                    "must use https:// (plain http is only allowed for private networks, when the \
                     administrator sets FEDIALT_ALLOW_PRIVATE_NETWORK=true or lists the address in \
                     FEDIALT_ALLOWED_PRIVATE_ADDRESSES)"
                        .into(),
                )
            }
            _ => return Err("must be an https:// address".into()),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a user name or password".into());
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("has no host name")?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err("must be just the instance's address, without a path (like https://mastodon.social)".into());
        }
        let mut origin = format!("{}://{}", url.scheme(), host.to_lowercase());
        if let Some(port) = url.port() {
            origin.push_str(&format!(":{port}"));
        }
        Url::parse(&origin)
            .map(InstanceUrl)
            .map_err(|_| "is not a web address".to_owned())
    }

    /// The stored form: `https://host[:port]`, no trailing slash.
    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.as_str(), path)
    }

    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or("")
    }
}

/// Control characters, the invisible ones that change the direction of the text around them
/// (U+202E turns "gpj.exe" into "exe.jpg"), and other invisible or blank-looking ones (zero-width
/// space, word joiner, BOM, line separators, Hangul fillers, soft hyphen): never in a name people
/// see. The zero-width joiner and non-joiner stay: emoji sequences and several scripts need them.
pub fn is_hidden_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{180E}'
                | '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
        )
}

/// Characters that show nothing by themselves (joiners, variation selectors, tags): a name made
/// only of these and spaces looks blank.
fn shows_nothing(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200C}' | '\u{200D}' | '\u{180B}'..='\u{180F}' | '\u{FE00}'..='\u{FE0F}'
                | '\u{E0020}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}'
        )
}

/// A connection's display name: 1 to 60 characters.
pub fn parse_connection_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    let count = name.chars().count();
    if count == 0 {
        return Err("must not be empty".into());
    }
    if count > 60 {
        return Err(format!(
            "must be at most 60 characters (this one has {count})"
        ));
    }
    if name.chars().all(shows_nothing) {
        return Err("must contain something visible".into());
    }
    if name.chars().any(is_hidden_control) {
        return Err(
            "must not contain control characters or invisible text-direction marks (such as U+202E)"
                .into(),
        );
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn https_only(_: &Url) -> bool {
        false
    }

    #[test]
    fn instance_urls_are_normalised() {
        let u = InstanceUrl::parse(" Mastodon.Social/ ", https_only).unwrap();
        assert_eq!(u.as_str(), "https://mastodon.social");
        assert_eq!(
            InstanceUrl::parse("https://pix.example:8443", https_only)
                .unwrap()
                .as_str(),
            "https://pix.example:8443"
        );
        assert!(InstanceUrl::parse("http://mastodon.social", https_only).is_err());
        assert_eq!(
            InstanceUrl::parse("http://127.0.0.1:3000", |_| true)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:3000"
        );
        assert!(InstanceUrl::parse("https://mastodon.social/@alice", https_only).is_err());
        assert!(InstanceUrl::parse("https://user:pw@mastodon.social", https_only).is_err());
        assert!(InstanceUrl::parse("ftp://mastodon.social", https_only).is_err());
        assert!(InstanceUrl::parse("", https_only).is_err());
    }

    #[test]
    fn names_and_types() {
        assert_eq!(
            parse_connection_name("  Art account ").unwrap(),
            "Art account"
        );
        assert!(parse_connection_name("   ").is_err());
        let refused = InstanceUrl::parse("http://social.example", |_| false).unwrap_err();
        assert!(
            refused.contains("FEDIALT_ALLOW_PRIVATE_NETWORK"),
            "{refused}"
        );
        assert!(parse_connection_name("Art\u{202e}gpj.exe").is_err());
        assert!(parse_connection_name("a\u{2066}b").is_err());
        assert!(
            parse_connection_name("\u{200D}\u{200C}").is_err(),
            "joiners alone look blank"
        );
        assert!(parse_connection_name("a\u{2800}b").is_err());
        assert_eq!(
            parse_connection_name("I \u{2764}\u{FE0F} art").unwrap(),
            "I \u{2764}\u{FE0F} art"
        );
        for hidden in [
            '\u{200B}', '\u{2060}', '\u{FEFF}', '\u{2028}', '\u{3164}', '\u{AD}',
        ] {
            assert!(
                parse_connection_name(&format!("a{hidden}b")).is_err(),
                "{hidden:?}"
            );
        }
        assert_eq!(
            parse_connection_name("Family 👨\u{200D}👩\u{200D}👧").unwrap(),
            "Family 👨\u{200D}👩\u{200D}👧",
            "emoji sequences keep their joiners"
        );
        assert!(parse_connection_name("a\tb").is_err());
        assert_eq!(parse_connection_name("שלום").unwrap(), "שלום");
        assert!(parse_connection_name(&"é".repeat(61)).is_err());
        assert_eq!(
            PlatformType::parse("Pixelfed").unwrap(),
            Some(PlatformType::Pixelfed)
        );
        assert_eq!(PlatformType::parse("").unwrap(), None);
        assert!(PlatformType::parse("misskey").is_err());
    }
}
