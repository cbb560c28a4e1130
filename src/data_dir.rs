//! The data folder holds the password hashes and sealed tokens (the SQLite file) and the secret
//! key: only the account fedialt runs as may read it. The folder is made 0700, the SQLite file and
//! its -wal and -shm companions 0600 (SQLite gives the companions the main file's mode, so the main
//! file is created private before SQLite first opens it).

use std::path::Path;

/// Creates the folder if needed and makes it private.
pub fn prepare(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("FEDIALT_DATA_DIR: cannot create {}: {e}", dir.display()))?;
    set_mode(dir, 0o700).map_err(|e| {
        format!(
            "FEDIALT_DATA_DIR: cannot make {} private: {e}",
            dir.display()
        )
    })
}

/// Creates the SQLite file private if it is not there yet, and makes it and its companions private.
pub fn private_sqlite(path: &Path) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = Path::new(&format!("{}{suffix}", path.display())).to_path_buf();
        if file.exists() {
            set_mode(&file, 0o600)
                .map_err(|e| format!("cannot make {} private: {e}", file.display()))?;
        }
    }
    Ok(())
}

/// Refuses a secret file that others can read: it has to be made private by hand (it may already
/// have been read), and the message says how.
pub fn check_private(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "the key file {path} can be read by other users (mode {mode:04o}); make it private \
                 with `chmod 600 {path}` and start again (if others may have read it, replace the key)",
                path = path.display(),
                mode = mode & 0o7777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn folder_and_database_files_are_private() {
        let dir = std::env::temp_dir().join(format!("fedialt-modes-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("fedialt.sqlite3");
        let wal = dir.join("fedialt.sqlite3-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_sqlite(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        let key = dir.join("secret.key");
        std::fs::write(&key, b"k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = check_private(&key).unwrap_err();
        assert!(refused.contains("chmod 600"), "{refused}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_private(&key).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
