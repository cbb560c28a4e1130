//! The binary itself: configuration errors, migrate, create-admin.

use std::process::{Command, Stdio};

use crate::helpers::*;

fn fedialt(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fedialt"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FEDIALT_DATA_DIR", dir)
        .env("REDIS_URL", "none")
        .current_dir(dir)
        .stdin(Stdio::null())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fedialt-cli-{}", random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_bad_value_stops_the_start_with_one_line_naming_the_variable() {
    let dir = temp_dir();
    for (var, value) in [
        ("FEDIALT_BIND", "not-an-address"),
        ("SESSION_STORAGE", "memcached"),
        ("FEDIALT_SECRET_KEY", "dG9vIHNob3J0"),
        ("REDIS_URL", "http://wrong"),
    ] {
        let (code, _, stderr) = fedialt(&dir, &[(var, value)], &["serve"]);
        assert_eq!(code, 2, "{var}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with(&format!("error: {var}:")), "{stderr}");
        assert!(
            !stderr.contains(value) || var == "FEDIALT_BIND",
            "no secret echoed: {stderr}"
        );
    }
    let (code, _, stderr) = fedialt(
        &dir,
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1/test")],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("FEDIALT_SECRET_KEY") && stderr.contains("PostgreSQL"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn create_admin_rules_and_exit_codes() {
    let dir = temp_dir();
    let (code, _, stderr) = fedialt(
        &dir,
        &[],
        &[
            "create-admin",
            "--username",
            "root",
            "--email",
            "root@example.org",
        ],
    );
    assert_eq!(code, 2, "no password and no terminal: {stderr}");
    assert!(stderr.contains("FEDIALT_ADMIN_PASSWORD"));

    let (code, _, stderr) = fedialt(
        &dir,
        &[("FEDIALT_ADMIN_PASSWORD", "elevenchars")],
        &[
            "create-admin",
            "--username",
            "root",
            "--email",
            "root@example.org",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("at least 12 characters"));

    let ok = [("FEDIALT_ADMIN_PASSWORD", "twelve chars!")];
    let (code, stdout, stderr) = fedialt(
        &dir,
        &ok,
        &[
            "create-admin",
            "--username",
            "root",
            "--email",
            "root@example.org",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("admin root created"));
    let (code, _, stderr) = fedialt(
        &dir,
        &ok,
        &[
            "create-admin",
            "--username",
            "Root",
            "--email",
            "other@example.org",
        ],
    );
    assert_eq!(code, 1, "taken: {stderr}");
    assert!(stderr.contains("taken"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(dir.join("secret.key")).map(|m| m.permissions().mode() & 0o777);
        // create-admin needs no key; serve makes it. Either way it is never world-readable.
        if let Ok(mode) = mode {
            assert_eq!(mode, 0o600);
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn migrate_prepares_a_fresh_sqlite_file() {
    let dir = temp_dir();
    let (code, stdout, stderr) = fedialt(&dir, &[], &["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    let embedded = diesel::migration::MigrationSource::<diesel::sqlite::Sqlite>::migrations(
        &fedialt::store::migrate::SQLITE,
    )
    .unwrap()
    .len();
    assert!(embedded >= 1);
    assert!(
        stdout.contains(&format!("migrations applied: {embedded}")),
        "{stdout}"
    );
    assert!(dir.join("fedialt.sqlite3").exists());
    let (code, stdout, _) = fedialt(&dir, &[], &["migrate"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("migrations applied: 0"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// The real binary: JSON logs carry no password, cookie or key; SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_no_secrets_and_stops_on_sigterm() {
    let dir = temp_dir();
    let password = "a very private password";
    let (code, _, stderr) = fedialt(
        &dir,
        &[("FEDIALT_ADMIN_PASSWORD", password)],
        &[
            "create-admin",
            "--username",
            "root",
            "--email",
            "root@example.org",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_fedialt"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FEDIALT_DATA_DIR", &dir)
        .env("FEDIALT_BIND", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", SHARED_REDIS)
        .env(
            "FEDIALT_REDIS_PREFIX",
            format!("fedialt-test-{}:", random_suffix()),
        )
        .env("LOG_FORMAT", "json")
        .env("FEDIALT_ALLOW_PRIVATE_NETWORK", "true")
        .env("RUST_LOG", "debug")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = new_client();
    assert!(
        eventually(std::time::Duration::from_secs(20), || {
            let client = client.clone();
            let url = format!("{base}/healthz");
            async move { client.get(url).send().await.is_ok() }
        })
        .await
    );
    let page = client
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf_from(&page);
    let login = client
        .post(format!("{base}/login?code=oauth-code-secret"))
        .form(&[
            ("username", "root"),
            ("password", password),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 303);
    let cookie = session_cookie(&login);
    assert_eq!(
        client
            .get(format!("{base}/account"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "graceful stop on SIGTERM: {:?}",
        out.status
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.lines()
            .any(|l| l.starts_with('{') && l.contains("\"request_id\"")),
        "JSON lines with a request id"
    );
    let key = std::fs::read_to_string(dir.join("secret.key")).unwrap();
    for secret in [
        password,
        cookie.as_str(),
        key.trim(),
        token.as_str(),
        "oauth-code-secret",
    ] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
