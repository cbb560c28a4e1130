//! The caption generation page, the settings form and save, the JSON API, /metrics, and the
//! settings cache: Redis down, killed, black-holed, shared by two instances, partitioned.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::both_databases;
use crate::helpers::*;

const VALID: [(&str, &str); 6] = [
    ("max_posts_per_run", "25"),
    ("max_caption_length", "400"),
    ("optimal_min_length", "60"),
    ("optimal_max_length", "150"),
    ("reprocess_existing", "on"),
    ("processing_delay", "2.5"),
];

impl TestApp {
    pub async fn save_settings_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let csrf = self.csrf_with(client).await;
        let mut all = vec![("csrf_token", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_form_with(client, path, &all).await
    }

    pub async fn settings_row(
        &self,
        platform_id: i64,
    ) -> Option<fedialt::store::caption_settings::SettingsRow> {
        let mut conn = self.state.db.conn().await.unwrap();
        fedialt::store::caption_settings::get(&mut conn, platform_id)
            .await
            .unwrap()
    }

    pub async fn api_update(
        &self,
        client: &reqwest::Client,
        body: serde_json::Value,
    ) -> reqwest::Response {
        let csrf = self.csrf_with(client).await;
        client
            .post(self.url("/api/update_user_settings"))
            .header("X-CSRF-Token", csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// `fields` with `name` set to `value`.
fn with(
    fields: &[(&'static str, &'static str)],
    name: &'static str,
    value: &'static str,
) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<_> = fields.iter().copied().filter(|(f, _)| *f != name).collect();
    out.push((name, value));
    out
}

async fn no_account_yet_sends_people_to_platforms(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    for path in ["/caption_generation", "/caption_settings"] {
        let r = app.get(path).await;
        assert_eq!(location(&r), "/platforms", "{path}");
    }
    let page = app.page("/platforms").await;
    assert!(page.contains("Connect a Mastodon or Pixelfed account first"));
}

async fn page_shows_the_account_and_settings_in_plain_words(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (fake, _) = app.connect_platform("alice").await;
    let page = app.get("/caption_generation").await;
    assert_eq!(page.status().as_u16(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains(&format!("@alice@{}", fake.host)));
    assert!(body.contains("up to 1500 characters"));
    assert!(body.contains("These are the defaults"));
    assert!(
        body.contains("<strong>50</strong>")
            && body.contains("<strong>80 to 200</strong>")
            && body.contains("<strong>500</strong>")
    );
    assert!(body.contains("<strong>1 second</strong>"));
    assert!(
        body.contains("No run yet for this account"),
        "the empty state says what a run does"
    );
    assert!(
        body.contains("<button type=\"submit\">Start a run</button>"),
        "Start is there and enabled"
    );
    assert!(body.contains("href=\"/caption_settings\""));
}

/// Pages are rendered once per distinct input and then served from the render memo: two people
/// viewing the same page in turn must each get their own account, name and CSRF token.
async fn two_people_viewing_in_turn_each_get_their_own_page(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    let bob = app.create_user("bob", "user").await;
    app.login(&alice).await;
    let (alice_fake, _) = app.connect_platform("alice").await;
    let bob_client = new_client();
    app.login_with(&bob_client, &bob.username, &bob.password)
        .await;
    let (bob_fake, _) = app.connect_platform_with(&bob_client, "bob").await;
    let alice_csrf = app.csrf().await;
    let bob_csrf = app.csrf_with(&bob_client).await;
    assert_ne!(alice_csrf, bob_csrf);
    for _ in 0..3 {
        let a = app.page("/caption_generation").await;
        let b = app.page_with(&bob_client, "/caption_generation").await;
        assert!(a.contains(&format!("@alice@{}", alice_fake.host)) && a.contains(&alice_csrf));
        assert!(!a.contains("@bob@") && !a.contains(&bob_csrf));
        assert!(b.contains(&format!("@bob@{}", bob_fake.host)) && b.contains(&bob_csrf));
        assert!(!b.contains("@alice@") && !b.contains(&alice_csrf));
    }
}

/// The flash cookie is set when there is a message and cleared once it was shown; other pages
/// carry no flash cookie at all.
async fn the_flash_cookie_comes_only_with_a_message(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    app.connect_platform("alice").await;
    let flash_cookie = |r: &reqwest::Response| -> Option<String> {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("fedialt_flash="))
            .map(str::to_owned)
    };
    // Connecting left a message; the first page shows it and clears the cookie.
    let first = app.get("/caption_generation").await;
    assert!(flash_cookie(&first).is_some_and(|c| c.contains("Max-Age=0")));
    let quiet = app.get("/caption_generation").await;
    assert_eq!(flash_cookie(&quiet), None, "no message, no cookie");
    assert_eq!(flash_cookie(&app.get("/healthz").await), None);
    let saved = app
        .save_settings_with(&app.client, "/caption_settings", &VALID)
        .await;
    let set = flash_cookie(&saved).expect("the save sets the flash cookie");
    assert!(!set.starts_with("fedialt_flash=;"), "it holds the message");
    let shown = app.get("/caption_generation").await;
    let cleared = flash_cookie(&shown).expect("showing the message clears the cookie");
    assert!(cleared.contains("Max-Age=0"));
    assert!(shown
        .text()
        .await
        .unwrap()
        .contains("Caption settings saved for"));
    let after = app.get("/caption_generation").await;
    assert_eq!(flash_cookie(&after), None);
    assert!(!after
        .text()
        .await
        .unwrap()
        .contains("Caption settings saved for"));
}

async fn saving_settings(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (_fake, pid) = app.connect_platform("alice").await;
    let form = app.page("/caption_settings").await;
    assert!(
        form.contains("value=\"50\"")
            && form.contains("value=\"500\"")
            && form.contains("value=\"1\"")
    );
    assert!(
        form.contains("<strong>1500</strong> characters"),
        "the instance limit is shown"
    );
    for path in ["/caption_settings", "/save_caption_settings"] {
        let r = app.save_settings_with(&app.client, path, &VALID).await;
        assert_eq!(r.status().as_u16(), 303, "{path}");
        assert_eq!(location(&r), "/caption_generation");
    }
    let page = app.page("/caption_generation").await;
    assert!(page.contains("Caption settings saved for"));
    assert!(
        page.contains("<strong>25</strong>")
            && page.contains("<strong>60 to 150</strong>")
            && page.contains("<strong>2.5 seconds</strong>")
    );
    assert!(page.contains("drafted again"));
    let row = app.settings_row(pid).await.unwrap();
    assert_eq!(
        (
            row.max_posts_per_run,
            row.max_caption_length,
            row.optimal_min_length,
            row.optimal_max_length
        ),
        (25, 400, 60, 150)
    );
    assert!(row.reprocess_existing);
    assert_eq!(row.processing_delay_ms, 2500);
    assert_eq!(row.version, 2, "saved twice");
    // An unticked checkbox is false.
    let unticked: Vec<_> = VALID
        .iter()
        .copied()
        .filter(|(f, _)| *f != "reprocess_existing")
        .collect();
    app.save_settings_with(&app.client, "/caption_settings", &unticked)
        .await;
    assert!(!app.settings_row(pid).await.unwrap().reprocess_existing);
}

async fn every_bad_input_is_refused_with_its_rule_and_nothing_saved(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (_fake, pid) = app.connect_platform("alice").await;
    let cases: Vec<(&str, &'static str, &str)> = vec![
        (
            "max_posts_per_run",
            "0",
            "Posts per run must be from 1 to 500.",
        ),
        (
            "max_posts_per_run",
            "501",
            "Posts per run must be from 1 to 500.",
        ),
        (
            "max_posts_per_run",
            "ten",
            "Posts per run must be a whole number: from 1 to 500.",
        ),
        (
            "max_posts_per_run",
            "",
            "Posts per run is required: from 1 to 500.",
        ),
        (
            "max_caption_length",
            "49",
            "Maximum description length must be from 50 to 1500, this instance",
        ),
        (
            "max_caption_length",
            "1501",
            "Maximum description length must be from 50 to 1500, this instance",
        ),
        (
            "optimal_min_length",
            "9",
            "Shortest preferred length must be from 10 to the longest preferred length (150).",
        ),
        (
            "optimal_min_length",
            "151",
            "Shortest preferred length must be from 10 to the longest preferred length (150).",
        ),
        (
            "optimal_max_length",
            "401",
            "Longest preferred length must be from 10 to the maximum description length (400).",
        ),
        (
            "processing_delay",
            "-1",
            "Pause between posts must be a number of seconds from 0 to 60.",
        ),
        (
            "processing_delay",
            "60.01",
            "Pause between posts must be a number of seconds from 0 to 60.",
        ),
        (
            "processing_delay",
            "NaN",
            "Pause between posts must be a number of seconds from 0 to 60.",
        ),
        (
            "processing_delay",
            "inf",
            "Pause between posts must be a number of seconds from 0 to 60.",
        ),
        (
            "reprocess_existing",
            "maybe",
            "Redo fedialt&#x27;s earlier descriptions must be on or off.",
        ),
    ];
    for (field, value, message) in cases {
        let fields = with(&VALID, field, value);
        let r = app
            .save_settings_with(&app.client, "/caption_settings", &fields)
            .await;
        assert_eq!(r.status().as_u16(), 422, "{field}={value}");
        let body = r.text().await.unwrap();
        assert!(body.contains(message), "{field}={value}: {message}");
        assert!(
            body.contains(&format!("<a href=\"#{field}\">")),
            "the summary links to {field}"
        );
        if field != "reprocess_existing" {
            assert!(
                body.contains(&format!("id=\"{field}-error\"")),
                "the field says it too"
            );
            assert!(
                body.contains(&format!("value=\"{}\"", escaped(value))),
                "input kept: {field}={value}"
            );
        }
        assert!(
            app.settings_row(pid).await.is_none(),
            "nothing saved for {field}={value}"
        );
    }
    // Several at once: each named.
    let r = app
        .save_settings_with(
            &app.client,
            "/caption_settings",
            &[
                ("max_posts_per_run", "0"),
                ("max_caption_length", "10"),
                ("optimal_min_length", "5"),
                ("optimal_max_length", "5"),
                ("processing_delay", "99"),
            ],
        )
        .await;
    let body = r.text().await.unwrap();
    assert!(body.contains("Please fix 5 problems"));
    assert!(app.settings_row(pid).await.is_none());
}

async fn the_json_api(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (_fake, pid) = app.connect_platform("alice").await;
    let r = app
        .api_update(
            &app.client,
            json!({"max_posts_per_run": 30, "processing_delay": 0.5, "reprocess_existing": true}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["platform_id"], pid);
    assert_eq!(body["max_posts_per_run"], 30);
    assert_eq!(body["max_caption_length"], 500, "left out: kept");
    assert_eq!(body["reprocess_existing"], true);
    assert_eq!(
        app.settings_row(pid).await.unwrap().processing_delay_ms,
        500
    );

    let r = app.api_update(&app.client, json!({"platform_id": pid, "max_posts_per_run": 0, "optimal_max_length": "9000", "processing_delay": "x"})).await;
    assert_eq!(r.status().as_u16(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"]["max_posts_per_run"],
        "Posts per run must be from 1 to 500."
    );
    assert!(body["errors"]["optimal_max_length"]
        .as_str()
        .unwrap()
        .starts_with("Longest preferred length must be"));
    assert!(body["errors"]["processing_delay"].is_string());
    assert_eq!(
        app.settings_row(pid).await.unwrap().max_posts_per_run,
        30,
        "nothing changed"
    );

    // A misspelt field is named, not silently left out.
    let r = app
        .api_update(
            &app.client,
            json!({"platform_id": pid, "max_post_per_run": 5}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["errors"]["max_post_per_run"]
        .as_str()
        .unwrap()
        .contains("is not a setting"));
    assert_eq!(app.settings_row(pid).await.unwrap().max_posts_per_run, 30);

    // Someone else's connection: 404, nothing changed.
    let mallory = app.create_user("mallory", "user").await;
    let mc = new_client();
    app.login_with(&mc, "mallory", &mallory.password).await;
    app.connect_platform_with(&mc, "mallory").await;
    let r = app
        .api_update(&mc, json!({"platform_id": pid, "max_posts_per_run": 1}))
        .await;
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(app.settings_row(pid).await.unwrap().max_posts_per_run, 30);

    // No CSRF header: 403; a visitor: 401 JSON.
    let r = app
        .client
        .post(app.url("/api/update_user_settings"))
        .json(&json!({"max_posts_per_run": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = new_client()
        .post(app.url("/api/update_user_settings"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    assert_eq!(app.settings_row(pid).await.unwrap().max_posts_per_run, 30);
}

async fn a_connection_removed_elsewhere_sends_people_to_platforms(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (_a, _first) = app.connect_platform("alice").await;
    let (_b, second) = app.connect_platform("alice").await;
    assert_eq!(app.get("/caption_generation").await.status().as_u16(), 200);
    // Another browser removes the one this session works on.
    let other = new_client();
    app.login_with(&other, "alice", &alice.password).await;
    let csrf = app.csrf_with(&other).await;
    app.post_form_with(
        &other,
        &format!("/platforms/{second}/delete"),
        &[("csrf_token", &csrf)],
    )
    .await;
    let r = app.get("/caption_generation").await;
    assert_eq!(location(&r), "/platforms");
    assert!(app.page("/platforms").await.contains("no longer connected"));
    assert_eq!(
        app.get("/caption_generation").await.status().as_u16(),
        200,
        "then the default is used"
    );
}

async fn deleting_a_connection_tombstones_exactly_its_keys(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (_a, keep) = app.connect_platform("alice").await;
    let (_b, gone) = app.connect_platform("alice").await;
    let csrf = app.csrf().await;
    app.post_form(
        &format!("/platforms/{gone}/switch"),
        &[("csrf_token", &csrf)],
    )
    .await;
    app.save_settings_with(&app.client, "/caption_settings", &VALID)
        .await;
    app.post_form(
        &format!("/platforms/{keep}/switch"),
        &[("csrf_token", &csrf)],
    )
    .await;
    app.get("/caption_generation").await;
    let value = |key: String| {
        let app = &app;
        async move {
            let client = redis::Client::open(SHARED_REDIS).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let full = app.state.cache.key(&key);
            redis::cmd("GET")
                .arg(full)
                .query_async::<Option<String>>(&mut conn)
                .await
                .unwrap()
        }
    };
    assert!(value(format!("settings:{gone}"))
        .await
        .unwrap()
        .contains("|D"));
    let kept_before = value(format!("settings:{keep}")).await.unwrap();
    app.post_form(
        &format!("/platforms/{gone}/delete"),
        &[("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(
        value(format!("settings:{gone}")).await.unwrap(),
        format!("{}|I", fedialt::cache::keys::TOMBSTONE)
    );
    assert_eq!(
        value(format!("settings:{keep}")).await.unwrap(),
        kept_before,
        "other keys untouched"
    );
    assert_eq!(app.outbox_rows().await, 0);
}

async fn metrics_for_admins_and_the_token(b: Backend) {
    let app = spawn_app_with(
        b,
        Options::default().with("FEDIALT_METRICS_TOKEN", "metrics-secret-token"),
    )
    .await;
    let admin = app.create_user("root", "admin").await;
    app.login(&admin).await;
    app.connect_platform("root").await;
    app.get("/caption_generation").await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    for line in [
        "fedialt_cache_hits_total{kind=\"session\"}",
        "fedialt_cache_misses_total{kind=\"settings\"}",
        "fedialt_cache_fallbacks_total{kind=\"platform\"}",
        "fedialt_cache_outbox_retries_total{kind=\"session\"}",
        "fedialt_redis_up 1",
        "fedialt_db_background_statements_total",
    ] {
        assert!(text.contains(line), "{line}");
    }
    let hits: u64 = text
        .lines()
        .find(|l| l.starts_with("fedialt_cache_hits_total{kind=\"session\"}"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(hits > 0);
    let by_token = || async {
        let r = new_client()
            .get(app.url("/metrics"))
            .bearer_auth("metrics-secret-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.text().await.unwrap()
    };
    let responses = |text: &str, class: &str| -> u64 {
        let prefix = format!("fedialt_http_responses_total{{class=\"{class}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {class} line"))
            .parse()
            .unwrap()
    };
    // Responses are counted by status class: a page, a redirect to sign in, a 404.
    let before = by_token().await;
    assert_eq!(app.get("/caption_generation").await.status().as_u16(), 200);
    assert_eq!(
        new_client()
            .get(app.url("/caption_generation"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        303
    );
    assert_eq!(app.get("/no-such-page").await.status().as_u16(), 404);
    let after = by_token().await;
    // The first /metrics read itself is a 2xx counted before the second read.
    assert_eq!(responses(&after, "2xx") - responses(&before, "2xx"), 2);
    assert_eq!(responses(&after, "3xx") - responses(&before, "3xx"), 1);
    assert_eq!(responses(&after, "4xx") - responses(&before, "4xx"), 1);
    assert_eq!(responses(&after, "5xx"), 0);
    assert_eq!(
        new_client()
            .get(app.url("/metrics"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let user = app.create_user("alice", "user").await;
    let c = new_client();
    app.login_with(&c, "alice", &user.password).await;
    assert_eq!(app.get_with(&c, "/metrics").await.status().as_u16(), 403);
}

/// Pages and the API with Redis unreachable from the start, killed mid-burst, and black-holed.
async fn pages_and_api_work_whatever_redis_does(b: Backend) {
    let closed = format!("redis://127.0.0.1:{}/0", free_port());
    let hole = BlackHole::start().await;
    let mut killed = RedisServer::start().await;
    for (name, url) in [
        ("unreachable", closed),
        ("killed", killed.url()),
        ("black-holed", hole.url()),
    ] {
        let app = spawn_app_with(b, Options::redis(url)).await;
        let alice = app.create_user("alice", "user").await;
        app.login(&alice).await;
        let (_fake, pid) = app.connect_platform("alice").await;
        app.save_settings_with(&app.client, "/caption_settings", &VALID)
            .await;
        let mut statuses = Vec::new();
        let mut slow = 0;
        for i in 0..30 {
            if i == 10 && name == "killed" {
                killed.kill();
            }
            let started = Instant::now();
            let (page, form) =
                tokio::join!(app.get("/caption_generation"), app.get("/caption_settings"));
            if i > 11 && started.elapsed() > Duration::from_millis(500) {
                slow += 1;
            }
            statuses.push(page.status().as_u16());
            statuses.push(form.status().as_u16());
        }
        let saved = app
            .save_settings_with(
                &app.client,
                "/caption_settings",
                &with(&VALID, "max_posts_per_run", "7"),
            )
            .await;
        statuses.push(saved.status().as_u16());
        let api = app
            .api_update(&app.client, json!({"max_posts_per_run": 8}))
            .await;
        statuses.push(api.status().as_u16());
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 303),
            "{name}: {statuses:?}"
        );
        assert_eq!(saved.status().as_u16(), 303, "{name}");
        assert_eq!(api.status().as_u16(), 200, "{name}");
        assert_eq!(
            slow, 0,
            "{name}: no request stalls once Redis is known down"
        );
        assert_eq!(
            app.settings_row(pid).await.unwrap().max_posts_per_run,
            8,
            "{name}"
        );
        assert!(
            app.page("/caption_generation")
                .await
                .contains("<strong>8</strong>"),
            "{name}"
        );
    }
}

/// Two instances sharing one Redis and one database.
async fn a_save_on_one_instance_is_seen_by_the_other(b: Backend) {
    let a = spawn_app(b).await;
    let other = spawn_sibling(&a, Options::default()).await;
    let alice = a.create_user("alice", "user").await;
    a.login(&alice).await;
    let (_fake, pid) = a.connect_platform("alice").await;
    let bc = new_client();
    other.login_with(&bc, "alice", &alice.password).await;
    // Warm both.
    assert!(other
        .page_with(&bc, "/caption_generation")
        .await
        .contains("<strong>50</strong>"));
    for n in ["11", "12", "13"] {
        let r = a
            .save_settings_with(
                &a.client,
                "/caption_settings",
                &with(&VALID, "max_posts_per_run", n),
            )
            .await;
        assert_eq!(r.status().as_u16(), 303);
        let page = other.page_with(&bc, "/caption_generation").await;
        assert!(
            page.contains(&format!("<strong>{n}</strong>")),
            "the other instance serves {n} right after the save"
        );
    }
    // Concurrent saves from both: the cache ends equal to the database.
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let (app, client) = if i % 2 == 0 {
            (&a, &a.client)
        } else {
            (&other, &bc)
        };
        let csrf = app.csrf_with(client).await;
        let n = (100 + i).to_string();
        let fields: Vec<(String, String)> = with(&VALID, "max_posts_per_run", "1")
            .into_iter()
            .map(|(f, v)| {
                (
                    f.to_owned(),
                    if f == "max_posts_per_run" {
                        n.clone()
                    } else {
                        v.to_owned()
                    },
                )
            })
            .chain([("csrf_token".to_owned(), csrf)])
            .collect();
        tasks.push(
            client
                .post(app.url("/caption_settings"))
                .form(&fields)
                .send(),
        );
    }
    for r in futures_util::future::join_all(tasks).await {
        assert_eq!(r.unwrap().status().as_u16(), 303);
    }
    let in_db = a.settings_row(pid).await.unwrap();
    let client = redis::Client::open(SHARED_REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let cached: String = redis::cmd("GET")
        .arg(a.state.cache.key(&format!("settings:{pid}")))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        cached.starts_with(&format!("{}|D", in_db.version)),
        "{cached} vs version {}",
        in_db.version
    );
    assert!(cached.contains(&format!(
        "\"max_posts_per_run\":{}",
        in_db.max_posts_per_run
    )));
    for app in [&a, &other] {
        let client = if std::ptr::eq(app, &a) {
            &a.client
        } else {
            &bc
        };
        let page = app.page_with(client, "/caption_generation").await;
        assert!(page.contains(&format!("<strong>{}</strong>", in_db.max_posts_per_run)));
    }
}

/// The saving instance cannot reach Redis, but Redis keeps its (now old) value for the other.
async fn a_save_behind_a_partition_reaches_the_other_instance_by_the_outbox(b: Backend) {
    let redis = RedisServer::start().await;
    let proxy = CuttableProxy::start(redis.port).await;
    let a = spawn_app_with(b, Options::redis(proxy.url())).await;
    let other = spawn_sibling(&a, Options::redis(redis.url())).await;
    let alice = a.create_user("alice", "user").await;
    a.login(&alice).await;
    a.connect_platform("alice").await;
    a.save_settings_with(
        &a.client,
        "/caption_settings",
        &with(&VALID, "max_posts_per_run", "21"),
    )
    .await;
    let bc = new_client();
    other.login_with(&bc, "alice", &alice.password).await;
    assert!(other
        .page_with(&bc, "/caption_generation")
        .await
        .contains("<strong>21</strong>"));

    proxy.cut();
    let r = a
        .save_settings_with(
            &a.client,
            "/caption_settings",
            &with(&VALID, "max_posts_per_run", "22"),
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let saved_at = Instant::now();
    // The other instance drains the outbox (every instance does, every 200 ms here): once the row
    // is gone, no read may serve 21.
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.outbox_rows().await == 0
        })
        .await,
        "the invalidation reached Redis through the other instance"
    );
    assert!(
        saved_at.elapsed() < Duration::from_secs(2),
        "within the timer's bound"
    );
    for _ in 0..10 {
        let page = other.page_with(&bc, "/caption_generation").await;
        assert!(
            page.contains("<strong>22</strong>"),
            "stale after {:?}",
            saved_at.elapsed()
        );
    }
    proxy.restore();
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.redis_status() == fedialt::cache::RedisStatus::Ok
        })
        .await
    );
    assert!(a
        .page("/caption_generation")
        .await
        .contains("<strong>22</strong>"));
}

/// Redis restarted from an old snapshot: its old values are never served.
async fn a_redis_restored_from_an_old_snapshot_serves_nothing_old(b: Backend) {
    let mut redis = RedisServer::start().await;
    let app = spawn_app_with(b, Options::redis(redis.url())).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (_fake, pid) = app.connect_platform("alice").await;
    app.save_settings_with(
        &app.client,
        "/caption_settings",
        &with(&VALID, "max_posts_per_run", "31"),
    )
    .await;
    app.get("/caption_generation").await;
    // The "snapshot": every key of ours with its value, as of now.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut snapshot = Vec::new();
    for key in app.redis_keys(&redis.url()).await {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        snapshot.push((key, dump));
    }
    assert!(snapshot
        .iter()
        .any(|(k, _)| k.ends_with(&format!("settings:{pid}"))));
    app.save_settings_with(
        &app.client,
        "/caption_settings",
        &with(&VALID, "max_posts_per_run", "32"),
    )
    .await;
    redis.restart().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for (key, dump) in &snapshot {
        redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(dump.as_slice())
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
    for _ in 0..5 {
        let r = app.get("/caption_generation").await;
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.text().await.unwrap().contains("<strong>32</strong>"));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.redis_status() == fedialt::cache::RedisStatus::Ok
        })
        .await
    );
    for _ in 0..5 {
        assert!(app
            .page("/caption_generation")
            .await
            .contains("<strong>32</strong>"));
    }
}

both_databases!(
    no_account_yet_sends_people_to_platforms,
    page_shows_the_account_and_settings_in_plain_words,
    two_people_viewing_in_turn_each_get_their_own_page,
    the_flash_cookie_comes_only_with_a_message,
    saving_settings,
    every_bad_input_is_refused_with_its_rule_and_nothing_saved,
    the_json_api,
    a_connection_removed_elsewhere_sends_people_to_platforms,
    deleting_a_connection_tombstones_exactly_its_keys,
    metrics_for_admins_and_the_token,
    pages_and_api_work_whatever_redis_does,
    a_save_on_one_instance_is_seen_by_the_other,
    a_save_behind_a_partition_reaches_the_other_instance_by_the_outbox,
    a_redis_restored_from_an_old_snapshot_serves_nothing_old,
);
