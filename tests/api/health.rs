use crate::both_databases;
use crate::helpers::*;

async fn healthz_and_readyz(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    let r = app.get("/readyz").await;
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"database": "ok", "redis": "ok"}));
}

async fn readyz_says_when_redis_is_unreachable(b: Backend) {
    let app = spawn_app_with(
        b,
        Options::redis(format!("redis://127.0.0.1:{}/0", free_port())),
    )
    .await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"database": "ok", "redis": "unavailable"})
    );
}

both_databases!(healthz_and_readyz, readyz_says_when_redis_is_unreachable);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_the_database_is_gone() {
    let app = spawn_app(Backend::Postgres).await;
    app.db.drop_now().await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status().as_u16(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["database"], "error");
    assert_eq!(body["redis"], "ok");
}

/// REDIS_URL=rediss://… (what REDIS_SSL=true builds): sessions and readiness over TLS, here against
/// a redis-server with a self-signed certificate (hence the #insecure fragment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls() {
    let dir = std::env::temp_dir().join(format!("fedialt-tls-{}", random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(made.status.success());
    let port = free_port();
    let _server = crate::services::KillOnDrop(
        std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--tls-auth-clients",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&cert)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("rediss://127.0.0.1:{port}/0#insecure");
    let up = eventually(std::time::Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            match redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
            {
                Ok(mut c) => redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(up, "TLS redis-server is up");
    let app = spawn_app_with(Backend::Sqlite, Options::redis(&url)).await;
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["redis"], "ok");
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    assert_eq!(app.get("/account").await.status().as_u16(), 200);
    assert!(
        app.redis_keys(&url)
            .await
            .iter()
            .any(|k| k.contains("session:")),
        "the session is in Redis, over TLS"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
