//! Usernames, e-mail addresses and new passwords.

use crate::config::Secret;

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// 2–40 characters: lowercase letters, digits, '.', '_' or '-'. Stored lowercase.
    pub fn parse(text: &str) -> Result<Username, String> {
        let name = text.trim().to_lowercase();
        let count = name.chars().count();
        if !(2..=40).contains(&count) {
            return Err("must be 2 to 40 characters long".into());
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        {
            return Err("may only use letters, digits, '.', '_' and '-'".into());
        }
        Ok(Username(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(text: &str) -> Result<Email, String> {
        let email = text.trim();
        let valid = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            })
            && !email.chars().any(|c| {
                c.is_whitespace()
                    || crate::domain::is_hidden_control(c)
                    || matches!(
                        c,
                        '<' | '>' | '"' | '(' | ')' | ',' | ';' | ':' | '\\' | '[' | ']'
                    )
            });
        if valid {
            Ok(Email(email.to_owned()))
        } else {
            Err("must be an e-mail address such as name@example.org".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password someone is choosing now (sign-in accepts whatever was chosen before).
#[derive(Clone, Debug)]
pub struct NewPassword(Secret<String>);

impl NewPassword {
    pub fn parse(text: &str) -> Result<NewPassword, String> {
        let count = text.chars().count();
        if count < MIN_PASSWORD_CHARS {
            return Err(format!(
                "must be at least {MIN_PASSWORD_CHARS} characters long"
            ));
        }
        if count > MAX_PASSWORD_CHARS {
            return Err(format!(
                "must be at most {MAX_PASSWORD_CHARS} characters long"
            ));
        }
        if text.trim().chars().count() < MIN_PASSWORD_CHARS {
            return Err(format!(
                "must have at least {MIN_PASSWORD_CHARS} characters besides spaces at its ends"
            ));
        }
        Ok(NewPassword(Secret::new(text.to_owned())))
    }

    pub fn into_secret(self) -> Secret<String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(Username::parse(" Alice ").unwrap().as_str(), "alice");
        assert!(Username::parse("a").is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse(&"x".repeat(41)).is_err());
    }

    #[test]
    fn emails() {
        assert!(Email::parse("a@example.org").is_ok());
        assert!(Email::parse("a@localhost").is_err());
        assert!(Email::parse("@example.org").is_err());
        assert!(Email::parse("a b@example.org").is_err());
    }

    #[test]
    fn passwords_count_characters() {
        assert!(NewPassword::parse("short").is_err());
        assert!(NewPassword::parse("twelve chars").is_ok());
        // 12 characters, more bytes: counted in characters.
        assert!(NewPassword::parse("ääääääääääää").is_ok());
        assert!(NewPassword::parse("äääääääääää").is_err());
    }
}
