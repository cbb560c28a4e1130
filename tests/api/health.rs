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
