//! One secret key feeds everything secret through HKDF-derived subkeys: the cookie key, the CSRF
//! key and the token-encryption key. It comes from FEDIALT_SECRET_KEY or from a key file that the
//! embedded default writes once (0600) into the data dir.

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

use crate::config::Config;

pub const KEY_FILE: &str = "secret.key";
const MIN_KEY_BYTES: usize = 64;

#[derive(Clone)]
pub struct Keys {
    pub cookie: [u8; 64],
    pub flash: [u8; 64],
    pub csrf: [u8; 32],
    pub encryption: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    pub fn derive(master: &[u8]) -> Keys {
        let hk = Hkdf::<Sha256>::new(Some(b"fedialt"), master);
        let mut keys = Keys {
            cookie: [0; 64],
            flash: [0; 64],
            csrf: [0; 32],
            encryption: [0; 32],
        };
        // expand only fails for outputs longer than 255 hash lengths.
        let _ = hk.expand(b"cookie v1", &mut keys.cookie);
        let _ = hk.expand(b"flash v1", &mut keys.flash);
        let _ = hk.expand(b"csrf v1", &mut keys.csrf);
        let _ = hk.expand(b"token encryption v1", &mut keys.encryption);
        keys
    }

    /// FEDIALT_SECRET_KEY when set; else the key file in the data dir, made on first start.
    pub fn load(config: &Config) -> Result<Keys, String> {
        if let Some(key) = &config.secret_key {
            return Ok(Keys::derive(key.expose()));
        }
        let master = load_or_create_key_file(&config.data_dir)?;
        Ok(Keys::derive(&master))
    }
}

pub fn decode_secret_key(text: &str) -> Result<Vec<u8>, String> {
    let bytes = STANDARD.decode(text.trim()).map_err(|_| {
        "expected base64 (make one with: head -c 64 /dev/urandom | base64 -w0)".to_owned()
    })?;
    if bytes.len() < MIN_KEY_BYTES {
        return Err(format!(
            "must be at least {MIN_KEY_BYTES} random bytes, base64-encoded (got {})",
            bytes.len()
        ));
    }
    Ok(bytes)
}

fn load_or_create_key_file(dir: &Path) -> Result<Vec<u8>, String> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            crate::data_dir::check_private(&path).map_err(|e| format!("FEDIALT_DATA_DIR: {e}"))?;
            decode_secret_key(&text)
                .map_err(|e| format!("FEDIALT_DATA_DIR: the key file {} {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::data_dir::prepare(dir)?;
            let mut master = vec![0u8; MIN_KEY_BYTES];
            rand::rngs::OsRng.fill_bytes(&mut master);
            write_private(&path, STANDARD.encode(&master).as_bytes())
                .map_err(|e| format!("FEDIALT_DATA_DIR: cannot write {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new secret key file");
            Ok(master)
        }
        Err(e) => Err(format!(
            "FEDIALT_DATA_DIR: cannot read {}: {e}",
            path.display()
        )),
    }
}

/// Creates the file with 0600 from the start (never readable by others, not even briefly).
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subkeys_differ_and_are_stable() {
        let a = Keys::derive(&[7u8; 64]);
        let b = Keys::derive(&[7u8; 64]);
        assert_eq!(a.cookie, b.cookie);
        assert_ne!(&a.cookie[..32], &a.csrf[..]);
        assert_ne!(a.csrf, a.encryption);
        assert_ne!(a.cookie, Keys::derive(&[8u8; 64]).cookie);
    }

    #[test]
    fn key_file_is_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("fedialt-keytest-{}", rand::random::<u64>()));
        let first = load_or_create_key_file(&dir).unwrap();
        let second = load_or_create_key_file(&dir).unwrap();
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(decode_secret_key(&STANDARD.encode([1u8; 32])).is_err());
        assert!(decode_secret_key("not base64!").is_err());
        assert!(decode_secret_key(&STANDARD.encode([1u8; 64])).is_ok());
    }
}
