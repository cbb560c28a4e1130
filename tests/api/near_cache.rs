//! The near cache (values in process memory, kept fresh by Redis's invalidation messages): a write
//! made by anyone else is seen by the very next view, a lost tracking connection turns it off until
//! a new one is open, and a Redis that cannot track just means every read goes to Redis.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::both_databases;
use crate::helpers::*;
use crate::services::RedisServer;

/// Settings for `pid` written straight into Redis at `version`, as another instance's save would.
async fn write_settings_copy(app: &TestApp, redis_url: &str, pid: i64, version: i64, posts: u32) {
    let value = format!(
        "{version}|D{{\"saved\":{{\"max_posts_per_run\":{posts},\"max_caption_length\":400,\"optimal_min_length\":60,\"optimal_max_length\":150,\"reprocess_existing\":false,\"processing_delay\":1.0}}}}"
    );
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(app.state.cache.key(&format!("settings:{pid}")))
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}

async fn page(app: &TestApp) -> String {
    let page = app.get("/caption_generation").await;
    assert_eq!(page.status().as_u16(), 200);
    page.text().await.unwrap()
}

/// Signs alice in, connects an account and warms the caption page: (connection id, password).
async fn warm(app: &TestApp) -> (i64, String) {
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (_fake, pid) = app.connect_platform("alice").await;
    for _ in 0..2 {
        assert!(page(app).await.contains("<strong>50</strong>"));
    }
    let (on, entries) = app.state.cache.near_status();
    assert!(on, "the near cache is on");
    let trips = app.state.cache.stats().breaker_trips.load(Ordering::SeqCst);
    assert_eq!(
        trips, 0,
        "moving the tracking connection to an HTTP worker trips nothing"
    );
    assert!(entries >= 3, "session, connections and settings are held");
    (pid, alice.password)
}

/// No sleep between the write and the view: the view's freshness barrier (a PING after it arrived)
/// guarantees the invalidation was applied before the page read its settings.
async fn a_write_by_anyone_else_is_seen_by_the_next_view(b: Backend) {
    let app = spawn_app(b).await;
    let (pid, _) = warm(&app).await;
    for (version, posts) in [(100, 77), (101, 78), (102, 79)] {
        write_settings_copy(&app, SHARED_REDIS, pid, version, posts).await;
        let body = page(&app).await;
        assert!(
            body.contains(&format!("<strong>{posts}</strong>")),
            "the view after the write shows {posts}"
        );
    }
}

/// The barrier is what makes the above true, not a fast loopback: here every byte from Redis
/// arrives 150 ms late, invalidations included. A view right after another client's write still
/// shows the write, because its PING's answer comes after the invalidation on the same connection.
/// (Without the barrier the view would read the old copy from memory before the push arrived.)
async fn the_barrier_waits_for_invalidations_on_a_slow_link(b: Backend) {
    let proxy = crate::services::DelayProxy::start(6379, Duration::from_millis(150)).await;
    let app = spawn_app_with(
        b,
        Options::redis(proxy.url()).with("FEDIALT_REDIS_TIMEOUT_MS", "2000"),
    )
    .await;
    let (pid, _) = warm(&app).await;
    for (version, posts) in [(100, 61), (101, 62), (102, 63)] {
        write_settings_copy(&app, SHARED_REDIS, pid, version, posts).await;
        let body = page(&app).await;
        assert!(
            body.contains(&format!("<strong>{posts}</strong>")),
            "the view right after the write shows {posts}"
        );
    }
    let (on, _) = app.state.cache.near_status();
    assert!(on, "the near cache stayed on: the views were served by it");
}

async fn a_lost_tracking_connection_turns_the_near_cache_off_until_a_new_one(b: Backend) {
    let redis = RedisServer::start().await;
    let app = spawn_app_with(b, Options::redis(redis.url())).await;
    let (pid, password) = warm(&app).await;
    // The tracking client is the one with the `t` flag. The one opened at start, before the HTTP
    // workers ran, is replaced by one on a worker and closes: one is left.
    let tracking_clients = || async {
        let list = match redis.command(&["CLIENT", "LIST"]).await {
            redis::Value::VerbatimString { text, .. } => text,
            redis::Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
            other => panic!("CLIENT LIST answered {other:?}"),
        };
        list.lines()
            .filter(|line| {
                line.split(' ')
                    .any(|f| f.starts_with("flags=") && f.contains('t'))
            })
            .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            tracking_clients().await.len() == 1
        })
        .await,
        "one tracking connection"
    );
    let ids = tracking_clients().await;
    let trips = app.state.cache.stats().breaker_trips.load(Ordering::SeqCst);
    for id in &ids {
        redis.command(&["CLIENT", "KILL", "ID", id]).await;
    }
    let noticed = eventually(Duration::from_secs(5), || async {
        app.state.cache.stats().breaker_trips.load(Ordering::SeqCst) > trips
    })
    .await;
    assert!(
        noticed,
        "the lost tracking connection is noticed without a read"
    );
    // Another instance saves (database, then Redis): whatever state the near cache is in, no view
    // here may serve the settings from before that save.
    let other = spawn_sibling(&app, Options::redis(redis.url())).await;
    let bc = new_client();
    other.login_with(&bc, "alice", &password).await;
    let save = |posts: u32| {
        let (other, bc) = (&other, &bc);
        async move {
            let r = other
                .api_update(
                    bc,
                    serde_json::json!({"platform_id": pid, "max_posts_per_run": posts}),
                )
                .await;
            assert_eq!(r.status().as_u16(), 200);
        }
    };
    save(77).await;
    for _ in 0..5 {
        assert!(
            page(&app).await.contains("<strong>77</strong>"),
            "every view after the save shows it"
        );
    }
    let back = eventually(Duration::from_secs(10), || async {
        page(&app).await;
        app.state.cache.near_status().0
    })
    .await;
    assert!(
        back,
        "a new tracking connection turns the near cache on again"
    );
    save(78).await;
    assert!(page(&app).await.contains("<strong>78</strong>"));
}

async fn a_redis_that_cannot_track_is_read_directly(b: Backend) {
    let redis = RedisServer::start_with(&["--rename-command", "CLIENT", ""]).await;
    let app = spawn_app_with(b, Options::redis(redis.url())).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (_fake, pid) = app.connect_platform("alice").await;
    for _ in 0..2 {
        assert!(page(&app).await.contains("<strong>50</strong>"));
    }
    assert_eq!(app.state.cache.near_status(), (false, 0));
    let trips = app.redis_round_trips();
    assert!(page(&app).await.contains("<strong>50</strong>"));
    assert_eq!(
        app.redis_round_trips() - trips,
        2,
        "the session's GET, then one MGET"
    );
    write_settings_copy(&app, &redis.url(), pid, 100, 77).await;
    assert!(page(&app).await.contains("<strong>77</strong>"));
}

both_databases!(
    a_write_by_anyone_else_is_seen_by_the_next_view,
    the_barrier_waits_for_invalidations_on_a_slow_link,
    a_lost_tracking_connection_turns_the_near_cache_off_until_a_new_one,
    a_redis_that_cannot_track_is_read_directly,
);
