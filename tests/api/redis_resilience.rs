//! Sessions when Redis misbehaves: flushed, killed, black-holed, paused, restarted. Each test runs
//! its own redis-server (or a listener that never answers); the shared one is never touched.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::both_databases;
use crate::helpers::*;

/// Signs alice in, connects an account and views the caption page until it is warm (the session,
/// the connection list and the settings marker in Redis and, with the near cache, in memory).
async fn warm_caption_page(app: &TestApp) {
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let _instance = app.connect_platform("alice").await;
    for _ in 0..2 {
        assert_eq!(app.get("/caption_generation").await.status().as_u16(), 200);
    }
}

/// What five warm views cost.
#[derive(Debug, PartialEq)]
struct WarmCost {
    sql: u64,
    checkouts: u64,
    round_trips: u64,
    commands: u64,
    near_hits: u64,
}

async fn five_warm_views(app: &TestApp) -> WarmCost {
    let count = || WarmCost {
        sql: app.statements(),
        checkouts: app.checkouts(),
        round_trips: app.redis_round_trips(),
        commands: app.redis_commands(),
        near_hits: app
            .state
            .cache
            .stats()
            .near_hits
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .sum(),
    };
    let before = count();
    for _ in 0..5 {
        let page = app.get("/caption_generation").await;
        assert_eq!(page.status().as_u16(), 200);
    }
    let after = count();
    WarmCost {
        sql: after.sql - before.sql,
        checkouts: after.checkouts - before.checkouts,
        round_trips: after.round_trips - before.round_trips,
        commands: after.commands - before.commands,
        near_hits: after.near_hits - before.near_hits,
    }
}

/// With the near cache: no SQL and no database connection; the session, the connection list, the
/// settings, the system-wide defaults, the run's progress, whether the account is watched and the
/// navigation's count of drafts waiting come from memory (7 values a view),
/// after one PING per view (the freshness barrier).
async fn warm_caption_page_costs_one_redis_round_trip_and_no_sql(b: Backend) {
    let app = spawn_app(b).await;
    warm_caption_page(&app).await;
    let expected = WarmCost {
        sql: 0,
        checkouts: 0,
        round_trips: 5,
        commands: 5,
        near_hits: 35,
    };
    assert_eq!(five_warm_views(&app).await, expected);
}

/// Without it (FEDIALT_NEAR_CACHE=false): no SQL; the session's GET, then one MGET, per view.
async fn warm_caption_page_without_near_cache_costs_two_round_trips(b: Backend) {
    let app = spawn_app_with(b, Options::default().with("FEDIALT_NEAR_CACHE", "false")).await;
    warm_caption_page(&app).await;
    let expected = WarmCost {
        sql: 0,
        checkouts: 0,
        round_trips: 10,
        commands: 10,
        near_hits: 0,
    };
    assert_eq!(five_warm_views(&app).await, expected);
}

async fn session_survives_flushall(b: Backend) {
    let redis = RedisServer::start().await;
    let app = spawn_app_with(b, Options::redis(redis.url())).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let _instance = app.connect_platform("alice").await;
    redis.command(&["FLUSHALL"]).await;
    assert_eq!(app.get("/account").await.status().as_u16(), 200);
    assert_eq!(app.get("/caption_generation").await.status().as_u16(), 200);
    // Put back into Redis from the database: the next view is warm again.
    let sql = app.statements();
    assert_eq!(app.get("/caption_generation").await.status().as_u16(), 200);
    assert_eq!(app.statements(), sql);
}

async fn session_survives_a_killed_redis_and_its_return(b: Backend) {
    let mut redis = RedisServer::start().await;
    let app = spawn_app_with(b, Options::redis(redis.url())).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let _instance = app.connect_platform("alice").await;
    redis.kill();
    for _ in 0..10 {
        assert_eq!(app.get("/caption_generation").await.status().as_u16(), 200);
    }
    assert_eq!(app.get("/account").await.status().as_u16(), 200);
    // A new, empty server on the same port: a new run_id, so a new cache generation.
    redis.restart().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.redis_status() == fedialt::cache::RedisStatus::Ok
        })
        .await,
        "the breaker closes again"
    );
    assert_eq!(app.get("/caption_generation").await.status().as_u16(), 200);
    let keys = app.redis_keys(&redis.url()).await;
    assert!(
        keys.iter().any(|k| k.contains("session:")),
        "the session is cached again: {keys:?}"
    );
}

async fn redis_killed_in_the_middle_of_a_burst(b: Backend) {
    let mut redis = RedisServer::start().await;
    let app = spawn_app_with(b, Options::redis(redis.url())).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let _instance = app.connect_platform("alice").await;
    let mut statuses = Vec::new();
    for i in 0..40 {
        if i == 15 {
            redis.kill();
        }
        let (a, c) = tokio::join!(app.get("/caption_generation"), app.get("/account"));
        statuses.push(a.status().as_u16());
        statuses.push(c.status().as_u16());
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

async fn black_holed_redis_costs_one_slow_request_at_most(b: Backend) {
    let hole = BlackHole::start().await;
    let app = spawn_app_with(b, Options::redis(hole.url())).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let _instance = app.connect_platform("alice").await;
    let mut slow = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let r = app.get("/caption_generation").await;
        assert_eq!(r.status().as_u16(), 200);
        if i > 0 && started.elapsed() > Duration::from_millis(500) {
            slow.push((i, started.elapsed()));
        }
    }
    assert!(slow.is_empty(), "slow requests after the first: {slow:?}");
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["redis"], "unavailable");
}

async fn a_redis_that_dies_after_start_is_noticed_quickly(b: Backend) {
    let redis = RedisServer::start().await;
    let app = spawn_app_with(b, Options::redis(redis.url())).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let _instance = app.connect_platform("alice").await;
    redis.pause();
    let started = Instant::now();
    assert_eq!(app.get("/caption_generation").await.status().as_u16(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(app.get("/caption_generation").await.status().as_u16(), 200);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    redis.resume();
}

async fn logout_while_redis_is_paused_does_not_come_back(b: Backend) {
    let redis = RedisServer::start().await;
    let app = spawn_app_with(b, Options::redis(redis.url())).await;
    let alice = app.create_user("alice", "user").await;
    let cookie = session_cookie(&app.login(&alice).await);
    assert_eq!(app.get("/account").await.status().as_u16(), 200);
    let token = app.csrf().await;
    // The session is in Redis now.
    assert!(app
        .redis_keys(&redis.url())
        .await
        .iter()
        .any(|k| k.contains("session:")));

    redis.pause();
    let r = app.post_form("/logout", &[("csrf_token", &token)]).await;
    assert_eq!(location(&r), "/login");
    assert_eq!(
        app.outbox_rows().await,
        1,
        "the tombstone waits in the outbox"
    );
    assert_eq!(
        get_with_cookie(&app, "/account", &cookie)
            .await
            .status()
            .as_u16(),
        303
    );
    redis.resume();

    assert!(
        eventually(Duration::from_secs(5), || async {
            app.redis_status() == fedialt::cache::RedisStatus::Ok && app.outbox_rows().await == 0
        })
        .await,
        "Redis trusted again with the outbox drained"
    );
    for _ in 0..3 {
        assert_eq!(
            get_with_cookie(&app, "/account", &cookie)
                .await
                .status()
                .as_u16(),
            303
        );
    }
}

async fn database_session_storage_keeps_sessions_out_of_redis(b: Backend) {
    let app = spawn_app_with(b, Options::default().with("SESSION_STORAGE", "database")).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let _instance = app.connect_platform("alice").await;
    assert_eq!(app.get("/account").await.status().as_u16(), 200);
    assert_eq!(app.session_rows().await, 1);
    let keys = app.redis_keys(SHARED_REDIS).await;
    assert!(keys.iter().all(|k| !k.contains("session:")), "{keys:?}");
}

async fn redis_turned_off(b: Backend) {
    let app = spawn_app_with(b, Options::redis("none")).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let _instance = app.connect_platform("alice").await;
    assert_eq!(app.get("/account").await.status().as_u16(), 200);
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["redis"], "disabled");
    assert_eq!(app.outbox_rows().await, 0);
}

both_databases!(
    warm_caption_page_costs_one_redis_round_trip_and_no_sql,
    warm_caption_page_without_near_cache_costs_two_round_trips,
    session_survives_flushall,
    session_survives_a_killed_redis_and_its_return,
    redis_killed_in_the_middle_of_a_burst,
    black_holed_redis_costs_one_slow_request_at_most,
    a_redis_that_dies_after_start_is_noticed_quickly,
    logout_while_redis_is_paused_does_not_come_back,
    database_session_storage_keeps_sessions_out_of_redis,
    redis_turned_off,
);

/// A fresh pooled connection (an idle pool reconnecting, say) to a Redis that restarted as another
/// server is refused, so old values under the current generation's keys are never read through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_to_a_restarted_redis_is_refused_until_reconciled() {
    use bb8::ManageConnection;
    let mut redis = RedisServer::start().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .unwrap();
    let run_id = fedialt::cache::manager::parse_run_id(&info).unwrap();
    let expected = std::sync::Arc::new(std::sync::RwLock::new(Some(run_id)));
    let manager = fedialt::cache::RedisManager::new(client.clone(), expected.clone());
    assert!(manager.connect().await.is_ok(), "the same server");
    redis.restart().await;
    let refused = match manager.connect().await {
        Ok(_) => panic!("another server must be refused"),
        Err(e) => e,
    };
    assert!(refused
        .to_string()
        .contains("not the server the cache generation belongs to"));
    // Once the generation is reconciled with the new server, its connections are welcome.
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .unwrap();
    *expected.write().unwrap() = fedialt::cache::manager::parse_run_id(&info);
    assert!(manager.connect().await.is_ok());
}

/// The table's expiry slides when a read finds it a few minutes old, with a version bump, and the
/// session is put back into Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_read_slides_the_tables_expiry() {
    use diesel::{ExpressionMethods, QueryDsl};
    use diesel_async::RunQueryDsl;
    use fedialt::store::schema::sessions;
    let redis = RedisServer::start().await;
    let app = spawn_app_with(Backend::Sqlite, Options::redis(redis.url())).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let old = fedialt::store::now() - 3600;
    let mut conn = app.state.db.conn().await.unwrap();
    fedialt::run!(&mut conn, |c| diesel::update(sessions::table)
        .set((
            sessions::last_seen_at.eq(old),
            sessions::expires_at.eq(old + 7200)
        ))
        .execute(c)
        .await)
    .unwrap();
    let before: i64 = fedialt::run!(&mut conn, |c| sessions::table
        .select(sessions::version)
        .first(c)
        .await)
    .unwrap();
    drop(conn);
    redis.command(&["FLUSHALL"]).await;
    assert_eq!(app.get("/account").await.status().as_u16(), 200);
    let mut conn = app.state.db.conn().await.unwrap();
    let (version, last_seen, expires): (i64, i64, i64) =
        fedialt::run!(&mut conn, |c| sessions::table
            .select((
                sessions::version,
                sessions::last_seen_at,
                sessions::expires_at
            ))
            .first(c)
            .await)
        .unwrap();
    assert_eq!(version, before + 1);
    assert!(last_seen > old + 3000);
    assert!(
        expires >= last_seen + 120 * 60 - 5,
        "slid by the idle timeout"
    );
    assert!(app
        .redis_keys(&redis.url())
        .await
        .iter()
        .any(|k| k.contains("session:")));
}
