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
    assert_eq!(
        stdout.trim(),
        "Created administrator 'root'. Sign in at http://127.0.0.1:8080/login"
    );
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
    let mut env = shared_redis().to_vec();
    env.extend([
        ("LOG_FORMAT", "json".to_owned()),
        ("FEDIALT_ALLOW_PRIVATE_NETWORK", "true".to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ]);
    let app = serve_binary(&dir, &env, true).await;
    let base = app.base.clone();
    let client = new_client();
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
    // An admin saves a model API key and tests the model (it fails: nobody listens there).
    let model_key = "sk-never-in-a-log-5b1e";
    let page = client
        .get(format!("{base}/admin/settings"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_from(&page);
    let saved = client
        .post(format!("{base}/admin/settings/model"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("caption_backend", "openai"),
            ("caption_base_url", "http://127.0.0.1:1/v1"),
            ("caption_model", "vision"),
            ("caption_timeout_secs", "2"),
            ("caption_concurrency", "1"),
            ("caption_api_key", model_key),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status().as_u16(), 303);
    let tested = client
        .post(format!("{base}/admin/settings/model/test"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(tested.status().as_u16(), 200);
    assert!(!tested.text().await.unwrap().contains(model_key));

    let (status, logs) = app.stop().await;
    assert!(status.success(), "graceful stop on SIGTERM: {status:?}");
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
        model_key,
    ] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A `fedialt serve` process, killed when dropped.
struct Serving {
    child: Option<std::process::Child>,
    base: String,
    port: u16,
}

impl Serving {
    /// SIGTERM, then how it ended and everything it wrote (with `capture`; stdout, then stderr).
    async fn stop(mut self) -> (std::process::ExitStatus, String) {
        let child = self.child.take().unwrap();
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let logs = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, logs)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `fedialt serve` on a free port in `dir` (Redis off unless `env` says otherwise) and waits
/// until it answers. With `capture`, its output is kept for `Serving::stop`.
async fn serve_binary(dir: &std::path::Path, env: &[(&str, String)], capture: bool) -> Serving {
    let port = free_port();
    let output = || {
        if capture {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fedialt"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FEDIALT_DATA_DIR", dir)
        .env("FEDIALT_BIND", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", "none")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(output())
        .stderr(output());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let serving = Serving {
        child: Some(cmd.spawn().unwrap()),
        base: format!("http://127.0.0.1:{port}"),
        port,
    };
    let client = new_client();
    let url = format!("{}/healthz", serving.base);
    assert!(
        eventually(std::time::Duration::from_secs(20), || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(url).send().await.is_ok() }
        })
        .await,
        "fedialt serve came up"
    );
    serving
}

/// Redis for a binary: the shared server, under a prefix of its own.
fn shared_redis() -> [(&'static str, String); 2] {
    [
        ("REDIS_URL", SHARED_REDIS.to_owned()),
        (
            "FEDIALT_REDIS_PREFIX",
            format!("fedialt-test-{}:", random_suffix()),
        ),
    ]
}

/// Signs in on a running binary; the client keeps the session.
async fn sign_in_on(base: &str, client: &reqwest::Client, username: &str, password: &str) {
    let page = client
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf_from(&page);
    let r = client
        .post(format!("{base}/login"))
        .form(&[
            ("username", username),
            ("password", password),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "signed in");
}

/// With HTTP(S)_PROXY in the environment, instance requests still go straight out through the
/// address guard, never to the proxy (which would resolve the target itself, past the guard).
/// Also: the data folder and the SQLite files are private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_in_the_environment_does_not_get_past_the_guard() {
    let dir = temp_dir();
    let password = "a long enough password";
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
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let contacted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = contacted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = proxy.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    let mut env: Vec<(&str, String)> = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ]
    .into_iter()
    .map(|k| (k, proxy_url.clone()))
    .collect();
    env.push((
        "FEDIALT_DNS_OVERRIDES",
        "metadata.example=169.254.169.254,local.example=127.0.0.1".into(),
    ));
    let app = serve_binary(&dir, &env, false).await;
    let client = new_client();
    sign_in_on(&app.base, &client, "root", password).await;
    let page = client
        .get(format!("{}/platforms", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_from(&page);
    for instance in [
        "https://metadata.example",
        "https://local.example",
        "https://127.0.0.1",
        "https://[::ffff:127.0.0.1]",
    ] {
        let r = client
            .post(format!("{}/platforms", app.base))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("instance_url", instance),
                ("access_token", "anything"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 422, "{instance}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("private, loopback or link-local"),
            "{instance}: {body}"
        );
    }
    assert_eq!(
        contacted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing went to the proxy"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.clone()), 0o700, "the data folder");
        assert_eq!(
            mode(dir.join("fedialt.sqlite3")),
            0o600,
            "the database file"
        );
        assert_eq!(
            mode(dir.join("fedialt.sqlite3-wal")),
            0o600,
            "its write-ahead log"
        );
        assert_eq!(mode(dir.join("secret.key")), 0o600, "the key file");
    }
    drop(app);

    // A key file others can read stops the start, saying how to fix it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("secret.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, _, stderr) = fedialt(&dir, &[], &["serve"]);
        assert_ne!(code, 0);
        assert!(stderr.contains("chmod 600"), "{stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_says_what_a_newcomer_needs() {
    let dir = temp_dir();
    let (code, stdout, _) = fedialt(&dir, &[], &["--help"]);
    assert_eq!(code, 0);
    for needed in [
        "With no command, fedialt runs `serve`",
        "http://127.0.0.1:8080",
        "README",
    ] {
        assert!(stdout.contains(needed), "{needed}: {stdout}");
    }
    let (code, stdout, _) = fedialt(&dir, &[], &["create-admin", "--help"]);
    assert_eq!(code, 0);
    for needed in [
        "--username",
        "2 to 40 letters",
        "--email",
        "at least 12 characters",
        "Exit codes: 0 created; 1 the username is taken",
        "FEDIALT_ADMIN_PASSWORD",
    ] {
        assert!(stdout.contains(needed), "{needed}: {stdout}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A first start says where to open fedialt and what to do first, in plain words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_says_where_to_go_next() {
    let dir = temp_dir();
    let app = serve_binary(&dir, &shared_redis(), true).await;
    let port = app.port;
    let (_, logs) = app.stop().await;
    assert!(
        logs.contains(&format!("open http://127.0.0.1:{port}")),
        "{logs}"
    );
    assert!(logs.contains("no user yet"), "{logs}");
    assert!(logs.contains("cargo run -- create-admin"), "{logs}");
    assert!(logs.contains("using Redis"), "{logs}");
    for alarm in ["circuit", "cache generation", "WARN"] {
        assert!(
            !logs.contains(alarm),
            "{alarm} on a normal first start: {logs}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
