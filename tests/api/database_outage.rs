//! The database goes away under a running app: a proxy in front of PostgreSQL that refuses (a
//! server that is down) or stalls (a server or network that hangs). After the first failure every
//! request answers within half a second; what the cache holds is still served; what must write
//! says plainly that nothing was saved and keeps the input; the app recovers by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;

const SETTINGS: [(&str, &str); 5] = [
    ("max_posts_per_run", "7"),
    ("max_caption_length", "400"),
    ("optimal_min_length", "90"),
    ("optimal_max_length", "210"),
    ("processing_delay", "0.5"),
];

async fn save(app: &TestApp, csrf: &str) -> reqwest::Response {
    let mut fields = vec![("csrf_token", csrf)];
    fields.extend_from_slice(&SETTINGS);
    app.post_form("/caption_settings", &fields).await
}

/// A request and how long it took.
async fn timed<R>(request: impl std::future::Future<Output = R>) -> (R, Duration) {
    let started = Instant::now();
    let response = request.await;
    (response, started.elapsed())
}

async fn sign_in_attempt(app: &TestApp) -> reqwest::Response {
    let client = new_client();
    let page = app.page_with(&client, "/login").await;
    let token = csrf_from(&page);
    client
        .post(app.url("/login"))
        .form(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_away_answers_at_once_serves_the_cache_and_recovers() {
    let db = Arc::new(TestDatabase::new(Backend::Postgres).await);
    let proxy = CuttableProxy::start(5432).await;
    let proxied = db
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let app = spawn_app_on(
        db.clone(),
        Options::default()
            .with("DATABASE_URL", &proxied)
            .with("FEDIALT_DB_TIMEOUT_MS", "1000")
            .with("FEDIALT_METRICS_TOKEN", "test-metrics-token"),
    )
    .await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (_fake, _platform) = app.connect_platform("alice").await;
    let page = app.get("/caption_generation").await;
    assert_eq!(page.status().as_u16(), 200);
    let csrf = csrf_from(&page.text().await.unwrap());

    for mode in [ProxyMode::Refuse, ProxyMode::Stall] {
        proxy.set(mode);
        // The first request that needs the database: bounded by the check-out/statement deadline.
        let (r, took) = timed(save(&app, &csrf)).await;
        assert_eq!(r.status().as_u16(), 503, "{mode:?}");
        assert!(
            took < Duration::from_secs(3),
            "{mode:?}: first failure took {took:?}"
        );
        assert!(app.state.db.breaker().is_open(), "{mode:?}");

        // From now on nothing waits.
        let (r, took) = timed(save(&app, &csrf)).await;
        assert!(
            took < Duration::from_millis(500),
            "{mode:?}: a save took {took:?}"
        );
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(r.headers()["retry-after"], "2");
        let body = r.text().await.unwrap();
        assert!(body.contains("Nothing was saved"), "{body}");
        assert!(
            body.contains("value=\"7\"") && body.contains("value=\"0.5\""),
            "input kept: {body}"
        );

        let (r, took) = timed(app.get("/login")).await;
        assert!(
            took < Duration::from_millis(500),
            "{mode:?}: /login took {took:?}"
        );
        // Signed in, /login sends on; a visitor gets the form, without the first-admin hint.
        assert_eq!(r.status().as_u16(), 303);
        let (r, took) = timed(app.get_with(&new_client(), "/login")).await;
        assert!(took < Duration::from_millis(500));
        assert_eq!(r.status().as_u16(), 200);
        assert!(!r.text().await.unwrap().contains("create-admin"));

        for path in ["/caption_generation", "/platforms", "/caption_settings"] {
            let (r, took) = timed(app.get(path)).await;
            assert!(
                took < Duration::from_millis(500),
                "{mode:?}: {path} took {took:?}"
            );
            assert_eq!(
                r.status().as_u16(),
                200,
                "{mode:?}: {path} is served from the cache"
            );
        }
        let (r, took) = timed(app.get("/account")).await;
        assert!(
            took < Duration::from_millis(500),
            "{mode:?}: /account took {took:?}"
        );
        assert_eq!(r.status().as_u16(), 503);
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("try again in a few seconds"));

        let (r, took) = timed(app.get("/readyz")).await;
        assert!(took < Duration::from_millis(500));
        assert_eq!(r.status().as_u16(), 503);

        let (r, took) = timed(async {
            app.client
                .post(app.url("/api/update_user_settings"))
                .header("X-CSRF-Token", &csrf)
                .json(&serde_json::json!({"max_posts_per_run": 9}))
                .send()
                .await
                .unwrap()
        })
        .await;
        assert!(took < Duration::from_millis(500));
        assert_eq!(r.status().as_u16(), 503);
        let json: serde_json::Value = r.json().await.unwrap();
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .contains("Nothing was saved"),
            "{json}"
        );

        // Signing in during the outage is a clear 503, never "wrong password", and however often
        // it is tried it counts against nobody.
        for _ in 0..7 {
            let (r, took) = timed(sign_in_attempt(&app)).await;
            assert!(
                took < Duration::from_millis(1500),
                "{mode:?}: sign-in took {took:?}"
            );
            assert_eq!(r.status().as_u16(), 503, "{mode:?}");
            assert!(!r.text().await.unwrap().contains("do not match"));
        }

        // A change that only the session holds (the account worked on) cannot be saved either:
        // the app's 503 page, not an empty 500 from the session layer.
        let (r, took) = timed(app.post_form(
            &format!("/platforms/{_platform}/switch"),
            &[("csrf_token", csrf.as_str())],
        ))
        .await;
        assert!(
            took < Duration::from_millis(500),
            "{mode:?}: switch took {took:?}"
        );
        assert_eq!(r.status().as_u16(), 503, "{mode:?}");
        assert!(r.headers().contains_key("content-security-policy"));
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("try again in a few seconds"));

        // Back, without a restart: the next save goes through.
        proxy.restore();
        let saved = eventually(Duration::from_secs(15), || async {
            save(&app, &csrf).await.status().as_u16() == 303
        })
        .await;
        assert!(saved, "{mode:?}: a save succeeds once the database is back");
        assert_eq!(
            sign_in_attempt(&app).await.status().as_u16(),
            303,
            "{mode:?}: the refused sign-ins locked nobody out"
        );
        assert!(!app.state.db.breaker().is_open());
        assert_eq!(
            app.settings_row(_platform).await.unwrap().max_posts_per_run,
            7
        );
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("test-metrics-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("fedialt_db_breaker_trips_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("fedialt_db_up 1"), "{metrics}");
    assert!(app.state.db.breaker().open_seconds() > 0.0);
}

/// SQLite is not exempt: a file another process holds locked (an exclusive lock, as a backup tool
/// or a stuck sqlite3 shell takes) refuses every write; the app says so at once after the first
/// failure, keeps serving the cache, and recovers when the lock goes. (A file made unreadable is
/// not shown here: the tests run as root, whom file modes do not stop, and open connections keep
/// reading a file whatever its mode; the same breaker handles the "unable to open" a new
/// connection would get.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_file_answers_at_once_and_recovers() {
    let app = spawn_app_with(
        Backend::Sqlite,
        Options::default().with("FEDIALT_DB_TIMEOUT_MS", "1000"),
    )
    .await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (_fake, platform) = app.connect_platform("alice").await;
    let page = app.get("/caption_generation").await;
    let csrf = csrf_from(&page.text().await.unwrap());

    // Another process takes the write lock and holds it until told.
    let file = app.db.data_dir.join("fedialt.sqlite3");
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (locked, is_locked) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let mut conn = diesel::SqliteConnection::establish(file.to_str().unwrap()).unwrap();
        conn.batch_execute("BEGIN EXCLUSIVE").unwrap();
        locked.send(()).unwrap();
        released.recv().unwrap();
        conn.batch_execute("ROLLBACK").unwrap();
    });
    is_locked.recv().unwrap();

    let (r, took) = timed(save(&app, &csrf)).await;
    assert_eq!(r.status().as_u16(), 503);
    assert!(took < Duration::from_secs(3), "first failure took {took:?}");
    let (r, took) = timed(save(&app, &csrf)).await;
    assert!(took < Duration::from_millis(500), "a save took {took:?}");
    assert_eq!(r.status().as_u16(), 503);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Nothing was saved") && body.contains("value=\"7\""),
        "{body}"
    );
    for path in ["/caption_generation", "/platforms"] {
        let (r, took) = timed(app.get(path)).await;
        assert!(took < Duration::from_millis(500), "{path} took {took:?}");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let (r, took) = timed(app.get_with(&new_client(), "/login")).await;
    assert!(took < Duration::from_millis(500));
    assert_eq!(r.status().as_u16(), 200);

    release.send(()).unwrap();
    holder.join().unwrap();
    let saved = eventually(Duration::from_secs(15), || async {
        save(&app, &csrf).await.status().as_u16() == 303
    })
    .await;
    assert!(saved, "a save succeeds once the lock is gone");
    assert_eq!(
        app.settings_row(platform).await.unwrap().max_posts_per_run,
        7
    );
}

/// Starting against a database that accepts connections and never answers stops with a message
/// naming DATABASE_URL, after twelve statement deadlines, instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_against_a_silent_database_gives_up_with_a_message() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let proxy = CuttableProxy::start(5432).await;
    proxy.set(ProxyMode::Stall);
    let proxied = db
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let options = Options::default()
        .with("DATABASE_URL", &proxied)
        .with("FEDIALT_DB_TIMEOUT_MS", "200");
    let config = config_for(&db, "fedialt-test-silent:", &"a".repeat(88), &options);
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        fedialt::startup::Application::build(config),
    )
    .await
    .expect("the start gives up by itself");
    let Err(error) = outcome else {
        panic!("a silent database cannot be started against");
    };
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(format!("{error:#}").contains("DATABASE_URL"), "{error:#}");
}
