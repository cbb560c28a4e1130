//! The admin area's people and audit log: every route closed to users (403) and visitors (to
//! /login); creating people field by field; the last-admin rule; deactivation, demotion and a new
//! password ending sessions in the database and in Redis (also with Redis paused during the
//! change); the audit rows.

use std::time::Duration;

use crate::both_databases;
use crate::helpers::*;
use crate::services::RedisServer;

async fn admin_app(b: Backend, options: Options) -> (TestApp, TestUser) {
    let app = spawn_app_with(b, options).await;
    let admin = app.create_user("root", "admin").await;
    app.login(&admin).await;
    (app, admin)
}

async fn user_count(app: &TestApp) -> i64 {
    let mut conn = app.state.db.conn().await.unwrap();
    fedialt::store::users::count(&mut conn).await.unwrap()
}

async fn every_admin_route_is_closed_to_others(b: Backend) {
    let (app, admin) = admin_app(b, Options::default()).await;
    let bob = app.create_user("bob", "user").await;
    let bobs = new_client();
    app.login_with(&bobs, "bob", &bob.password).await;
    let csrf = app.csrf_with(&bobs).await;
    let id = admin.id;
    let gets = [
        "/admin/settings".to_owned(),
        "/admin/runs".to_owned(),
        "/admin".to_owned(),
        "/admin/users".to_owned(),
        format!("/admin/users/{id}"),
        "/admin/audit".to_owned(),
    ];
    let posts = [
        "/admin/settings/model".to_owned(),
        "/admin/settings/model/test".to_owned(),
        "/admin/settings/defaults".to_owned(),
        "/admin/users".to_owned(),
        format!("/admin/users/{id}/role"),
        format!("/admin/users/{id}/deactivate"),
        format!("/admin/users/{id}/activate"),
        format!("/admin/users/{id}/password"),
    ];
    let visitor = new_client();
    for path in &gets {
        assert_eq!(
            app.get_with(&bobs, path).await.status().as_u16(),
            403,
            "GET {path}"
        );
        let r = app.get_with(&visitor, path).await;
        assert_eq!(r.status().as_u16(), 303, "GET {path}");
        assert!(location(&r).starts_with("/login"));
        assert_eq!(
            app.get(path).await.status().as_u16(),
            200,
            "GET {path} as the admin"
        );
    }
    for path in &posts {
        let fields = [
            ("csrf_token", csrf.as_str()),
            ("role", "admin"),
            ("password", "a new long password"),
        ];
        let r = app.post_form_with(&bobs, path, &fields).await;
        assert_eq!(r.status().as_u16(), 403, "POST {path}");
        let r = app.post_form_with(&visitor, path, &fields).await;
        assert_eq!(r.status().as_u16(), 303, "POST {path}");
        assert!(location(&r).starts_with("/login"));
    }
    let mut conn = app.state.db.conn().await.unwrap();
    let root = fedialt::store::users::by_id(&mut conn, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (root.role.as_str(), root.active),
        ("admin", true),
        "nothing changed"
    );
}

async fn people_are_created_field_by_field(b: Backend) {
    let (app, _admin) = admin_app(b, Options::default()).await;
    let csrf = app.csrf().await;
    let before = user_count(&app).await;
    let r = app
        .post_form(
            "/admin/users",
            &[
                ("csrf_token", &csrf),
                ("username", "A B"),
                ("email", "not-an-address"),
                ("password", "short"),
                ("role", "owner"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 422);
    let page = r.text().await.unwrap();
    for (field, words) in [
        ("username", "Username:"),
        ("email", "E-mail:"),
        ("password", "at least 12"),
        ("role", "must be user or admin"),
    ] {
        assert!(page.contains(&format!("href=\"#{field}\"")), "{field}");
        assert!(page.contains(words), "{words}: {page}");
    }
    assert!(
        page.contains("value=\"not-an-address\""),
        "what was typed is kept"
    );
    assert!(!page.contains("value=\"short\""), "never the password");
    assert_eq!(user_count(&app).await, before, "nothing saved");

    let fields = [
        ("csrf_token", csrf.as_str()),
        ("username", "carol"),
        ("email", "carol@example.org"),
        ("password", "carol's long password"),
        ("role", "user"),
    ];
    let r = app.post_form("/admin/users", &fields).await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(location(&r).starts_with("/admin/users/"));
    let carol = new_client();
    let r = app
        .login_with(&carol, "carol", "carol's long password")
        .await;
    assert_eq!(r.status().as_u16(), 303, "carol can sign in");
    // The same name again is refused on its field.
    let r = app.post_form("/admin/users", &fields).await;
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().await.unwrap().contains("carol is taken"));
    let audit = app.page("/admin/audit").await;
    assert!(
        audit.contains("user created") && audit.contains("carol") && audit.contains("root"),
        "{audit}"
    );
}

async fn the_last_admin_stays(b: Backend) {
    let (app, admin) = admin_app(b, Options::default()).await;
    let csrf = app.csrf().await;
    let id = admin.id;
    for (action, fields) in [("role", vec![("role", "user")]), ("deactivate", vec![])] {
        let mut all = vec![("csrf_token", csrf.as_str())];
        all.extend(fields);
        let r = app
            .post_form(&format!("/admin/users/{id}/{action}"), &all)
            .await;
        assert_eq!(r.status().as_u16(), 422, "{action}");
        assert!(r.text().await.unwrap().contains("last active admin"));
    }
    assert_eq!(
        app.get("/admin").await.status().as_u16(),
        200,
        "still signed in, still admin"
    );
    // With a second admin, one can step down; then the other is the last.
    let second = app.create_user("second", "admin").await;
    let r = app
        .post_form(
            &format!("/admin/users/{}/role", second.id),
            &[("csrf_token", &csrf), ("role", "user")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let r = app
        .post_form(
            &format!("/admin/users/{}/role", second.id),
            &[("csrf_token", &csrf), ("role", "admin")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let r = app
        .post_form(
            &format!("/admin/users/{id}/role"),
            &[("csrf_token", &csrf), ("role", "user")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303, "root steps down");
    assert_eq!(location(&r), "/login", "and is signed out");
    assert_eq!(app.get("/admin").await.status().as_u16(), 303);
}

/// bob, signed in on `bobs`: whether his session still works.
async fn signed_in(app: &TestApp, client: &reqwest::Client) -> bool {
    app.get_with(client, "/account").await.status().as_u16() == 200
}

async fn changes_end_sessions_at_once(b: Backend) {
    let redis = RedisServer::start().await;
    let (app, _admin) = admin_app(b, Options::redis(redis.url())).await;
    let csrf = app.csrf().await;
    let bob = app.create_user("bob", "user").await;
    let carol = app.create_user("carol", "admin").await;

    // Deactivation.
    let bobs = new_client();
    app.login_with(&bobs, "bob", &bob.password).await;
    assert!(signed_in(&app, &bobs).await);
    let r = app
        .post_form(
            &format!("/admin/users/{}/deactivate", bob.id),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(!signed_in(&app, &bobs).await, "bob is signed out at once");
    let r = app.login_with(&new_client(), "bob", &bob.password).await;
    assert_ne!(r.status().as_u16(), 303, "and cannot sign in");
    app.post_form(
        &format!("/admin/users/{}/activate", bob.id),
        &[("csrf_token", &csrf)],
    )
    .await;

    // Demotion takes /admin away from an open session.
    let carols = new_client();
    app.login_with(&carols, "carol", &carol.password).await;
    assert_eq!(app.get_with(&carols, "/admin").await.status().as_u16(), 200);
    app.post_form(
        &format!("/admin/users/{}/role", carol.id),
        &[("csrf_token", &csrf), ("role", "user")],
    )
    .await;
    assert_ne!(
        app.get_with(&carols, "/admin").await.status().as_u16(),
        200,
        "no more /admin"
    );

    // A new password, set while Redis is paused: the session's Redis copy comes back with Redis,
    // and still does not sign bob in.
    let bobs = new_client();
    app.login_with(&bobs, "bob", &bob.password).await;
    assert!(signed_in(&app, &bobs).await);
    redis.pause();
    let r = app
        .post_form(
            &format!("/admin/users/{}/password", bob.id),
            &[
                ("csrf_token", &csrf),
                ("password", "bob's brand new password"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(
        !signed_in(&app, &bobs).await,
        "ended in the database while Redis is away"
    );
    redis.resume();
    assert!(
        eventually(Duration::from_secs(15), || async {
            app.outbox_rows().await == 0 && app.redis_status() == fedialt::cache::RedisStatus::Ok
        })
        .await
    );
    assert!(
        !signed_in(&app, &bobs).await,
        "and Redis's old copy does not bring it back"
    );
    let mut conn = app.state.db.conn().await.unwrap();
    let left = fedialt::store::sessions::ids_for_user_except(&mut conn, bob.id, None)
        .await
        .unwrap();
    assert!(left.is_empty());
    drop(conn);
    assert_ne!(
        app.login_with(&new_client(), "bob", &bob.password)
            .await
            .status()
            .as_u16(),
        303
    );
    assert_eq!(
        app.login_with(&new_client(), "bob", "bob's brand new password")
            .await
            .status()
            .as_u16(),
        303
    );
    // A promotion gives /admin to an open session at once; a repeat changes and logs nothing.
    let bobs = new_client();
    app.login_with(&bobs, "bob", "bob's brand new password")
        .await;
    assert_eq!(app.get_with(&bobs, "/admin").await.status().as_u16(), 403);
    app.post_form(
        &format!("/admin/users/{}/role", bob.id),
        &[("csrf_token", &csrf), ("role", "admin")],
    )
    .await;
    assert_eq!(app.get_with(&bobs, "/admin").await.status().as_u16(), 200);
    let rows = |page: String| page.matches("<tr><td>").count();
    let before = rows(app.page("/admin/audit").await);
    let r = app
        .post_form(
            &format!("/admin/users/{}/activate", bob.id),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(app
        .page(&format!("/admin/users/{}", bob.id))
        .await
        .contains("Nothing changed"));
    assert_eq!(
        rows(app.page("/admin/audit").await),
        before,
        "no audit row for nothing"
    );
    let audit = app.page("/admin/audit").await;
    for action in ["deactivated", "activated", "role changed", "password set"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    assert!(
        !audit.contains("bob's brand new password"),
        "no password in the log"
    );
}

async fn the_people_list_finds_and_pages(b: Backend) {
    let (app, _admin) = admin_app(b, Options::default()).await;
    for i in 0..55 {
        app.create_user(&format!("person{i:02}"), "user").await;
    }
    let page = app.page("/admin/users").await;
    assert!(
        page.contains("56 people") && page.contains("page 1 of 2"),
        "{page}"
    );
    let found = app.page("/admin/users?q=PERSON07").await;
    assert!(
        found.contains(">person07<") && found.contains("1 person matching"),
        "{found}"
    );
    let none = app.page("/admin/users?q=%3Cb%3E").await;
    assert!(none.contains("No one matches") && !none.contains("<b>"));
}

async fn admins_cancel_and_retry_anyones_runs(b: Backend) {
    use crate::fakes::instance::{FakePost, Flavor};
    use crate::fakes::model::FakeModel;
    let model = FakeModel::start().await;
    let options = Options {
        env: model.env(),
        ..Options::default()
    };
    let (app, _admin) = admin_app(b, options).await;
    let alice = app.create_user("alice", "user").await;
    let alices = new_client();
    app.login_with(&alices, "alice", &alice.password).await;
    let (fake, _pid) = app
        .connect_flavor_with(&alices, "alice", Flavor::Mastodon)
        .await;
    fake.set(|f| f.posts = vec![FakePost::images(1, &["m1"]), FakePost::images(2, &["m2"])]);
    app.set_run_settings(&alices, 50, "0", false).await;
    // A run that fails: the instance refuses the token.
    let tokens: Vec<String> = fake
        .state
        .lock()
        .unwrap()
        .accounts
        .keys()
        .cloned()
        .collect();
    let saved = fake.state.lock().unwrap().accounts.clone();
    fake.set(|f| f.accounts.clear());
    app.start_run_with(&alices).await;
    let status = app
        .finished_run_with(&alices, Duration::from_secs(20))
        .await;
    assert_eq!(status["state"], "failed");
    let run_id = status["run_id"].as_i64().unwrap();
    let page = app.page("/admin/runs?state=failed").await;
    assert!(
        page.contains(&format!("action=\"/admin/runs/{run_id}/retry\"")),
        "{page}"
    );
    assert!(page.contains("alice"));
    // Reconnect (the token works again) and retry as the admin: it runs to the end.
    fake.set(|f| f.accounts = saved);
    assert!(!tokens.is_empty());
    // Connected again by the person (the same account: the connection is updated, its "needs a
    // new token" cleared).
    let csrf_alice = app.csrf_with(&alices).await;
    let r = app
        .post_form_with(
            &alices,
            "/platforms",
            &[
                ("csrf_token", &csrf_alice),
                ("instance_url", &fake.url),
                ("access_token", &tokens[0]),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let csrf = app.csrf().await;
    let r = app
        .post_form(
            &format!("/admin/runs/{run_id}/retry"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let status = app
        .finished_run_with(&alices, Duration::from_secs(20))
        .await;
    assert_eq!(
        (status["state"].as_str(), status["drafts_made"].as_i64()),
        (Some("completed"), Some(2)),
        "{status}"
    );
    // A second retry of a completed run says there is nothing to retry.
    let r = app
        .post_form(
            &format!("/admin/runs/{run_id}/retry"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(app.page("/admin/runs").await.contains("nothing to retry"));

    // Deactivating a person cancels their run going.
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    model.set(|m| m.hold = Some(hold.clone()));
    fake.set(|f| f.posts.insert(0, FakePost::images(4, &["m4"])));
    app.start_run_with(&alices).await;
    assert!(eventually(Duration::from_secs(10), || async { model.calls("m4") == 1 }).await);
    let r = app
        .post_form(
            &format!("/admin/users/{}/deactivate", alice.id),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(app
        .page(&format!("/admin/users/{}", alice.id))
        .await
        .contains("run going was cancelled"));
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.run_rows().await.last().unwrap().state == "cancelled"
        })
        .await
    );
    hold.add_permits(10);
    app.post_form(
        &format!("/admin/users/{}/activate", alice.id),
        &[("csrf_token", &csrf)],
    )
    .await;
    app.login_with(&alices, "alice", &alice.password).await;

    // Cancel: a run held in a model call.
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    model.set(|m| m.hold = Some(hold.clone()));
    fake.set(|f| f.posts.insert(0, FakePost::images(5, &["m5"])));
    app.start_run_with(&alices).await;
    assert!(eventually(Duration::from_secs(10), || async { model.calls("m5") == 1 }).await);
    let running = app.run_status_with(&alices).await["run_id"]
        .as_i64()
        .unwrap();
    let started = std::time::Instant::now();
    let r = app
        .post_form(
            &format!("/admin/runs/{running}/cancel"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let status = app.finished_run_with(&alices, Duration::from_secs(5)).await;
    assert_eq!(status["state"], "cancelled");
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.add_permits(10);
    let audit = app.page("/admin/audit").await;
    assert!(
        audit.contains("run retried") && audit.contains("run cancelled"),
        "{audit}"
    );
    assert!(audit.contains(&format!("run {run_id} of alice")));
    // Not for users.
    assert_eq!(
        app.get_with(&alices, "/admin/runs").await.status().as_u16(),
        403
    );
    let r = app
        .post_form_with(
            &alices,
            &format!("/admin/runs/{run_id}/retry"),
            &[("csrf_token", &csrf_alice)],
        )
        .await;
    assert_eq!(r.status().as_u16(), 403);
}

/// The six fields as the forms take them.
fn settings_fields<'a>(csrf: &'a str, posts: &'a str, max: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf_token", csrf),
        ("max_posts_per_run", posts),
        ("max_caption_length", max),
        ("optimal_min_length", "60"),
        ("optimal_max_length", "180"),
        ("processing_delay", "1.5"),
    ]
}

/// The value a settings form shows in a field.
fn field_value(page: &str, name: &str) -> String {
    let at = page.find(&format!("name=\"{name}\"")).unwrap();
    let rest = &page[at..];
    let start = rest.find("value=\"").unwrap() + 7;
    rest[start..start + rest[start..].find('"').unwrap()].to_owned()
}

async fn defaults_reach_everyone_without_settings(b: Backend) {
    let redis = RedisServer::start().await;
    let (app, _admin) = admin_app(b, Options::redis(redis.url())).await;
    let sibling = spawn_sibling(&app, Options::redis(redis.url())).await;
    // Alice has no settings of her own; Bob saved his.
    let alice = app.create_user("alice", "user").await;
    let alices = new_client();
    app.login_with(&alices, "alice", &alice.password).await;
    app.connect_platform_with(&alices, "alice").await;
    let bob = app.create_user("bob", "user").await;
    let bobs = new_client();
    app.login_with(&bobs, "bob", &bob.password).await;
    app.connect_platform_with(&bobs, "bob").await;
    app.set_run_settings(&bobs, 7, "0", false).await;
    // Both app instances are warm with the built-in defaults.
    let page = app.page_with(&alices, "/caption_settings").await;
    assert_eq!(field_value(&page, "max_posts_per_run"), "50");
    let page = sibling.page_with(&alices, "/caption_settings").await;
    assert_eq!(field_value(&page, "max_posts_per_run"), "50");

    // Bad values: refused field by field, nothing saved.
    let csrf = app.csrf().await;
    let r = app
        .post_form(
            "/admin/settings/defaults",
            &settings_fields(&csrf, "0", "1501"),
        )
        .await;
    assert_eq!(r.status().as_u16(), 422);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("href=\"#max_posts_per_run\"")
            && page.contains("href=\"#max_caption_length\""),
        "{page}"
    );
    assert!(page.contains("1500"));
    assert_eq!(
        field_value(&app.page("/admin/settings").await, "max_posts_per_run"),
        "50"
    );

    let r = app
        .post_form(
            "/admin/settings/defaults",
            &settings_fields(&csrf, "123", "400"),
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    // At once, on both instances; Bob's own settings stay his.
    for instance in [&app, &sibling] {
        let page = instance.page_with(&alices, "/caption_settings").await;
        assert_eq!(field_value(&page, "max_posts_per_run"), "123");
        assert_eq!(field_value(&page, "max_caption_length"), "400");
        let page = instance.page_with(&bobs, "/caption_settings").await;
        assert_eq!(field_value(&page, "max_posts_per_run"), "7");
    }
    // With Redis away, a new save is saved and seen.
    redis.pause();
    let r = app
        .post_form(
            "/admin/settings/defaults",
            &settings_fields(&csrf, "321", "400"),
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let page = app.page_with(&alices, "/caption_settings").await;
    assert_eq!(field_value(&page, "max_posts_per_run"), "321");
    redis.resume();
    assert!(
        eventually(Duration::from_secs(15), || async {
            app.outbox_rows().await == 0 && app.redis_status() == fedialt::cache::RedisStatus::Ok
        })
        .await
    );
    let page = sibling.page_with(&alices, "/caption_settings").await;
    assert_eq!(
        field_value(&page, "max_posts_per_run"),
        "321",
        "never the older value"
    );
    let audit = app.page("/admin/audit").await;
    assert!(audit.contains("defaults saved"), "{audit}");
}

async fn the_overview_counts_what_matters(b: Backend) {
    let (app, _admin) = admin_app(b, Options::default()).await;
    app.create_user("bob", "user").await;
    app.create_user_full("gone", "user", false).await;
    let page = app.page("/admin").await;
    for (label, value) in [("People", "3"), ("Active", "2"), ("Admins", "1")] {
        assert!(
            page.contains(&format!("<dt>{label}</dt><dd>{value}</dd>"))
                || page.contains(&format!(
                    "<dt>{label}</dt><dd><a href=\"/admin/users\">{value}</a></dd>"
                )),
            "{label}: {page}"
        );
    }
    assert!(page.contains("<dt>Database</dt><dd>ok</dd>"));
    assert!(page.contains("<dt>Redis</dt><dd>ok</dd>"), "{page}");
    assert!(page.contains("Runs failed"));
}

async fn the_model_admins_choose_is_used_at_once_and_its_key_stays_secret(b: Backend) {
    use crate::fakes::instance::{FakePost, Flavor};
    use crate::fakes::model::FakeModel;
    const KEY: &str = "sk-test-secret-4f2a9c71";
    let first = FakeModel::start().await;
    let second = FakeModel::start().await;
    let redis = RedisServer::start().await;
    let mut options = Options::redis(redis.url()).with("CAPTION_API_KEY", "env-key-0123456789");
    let mut env = first.env();
    env.append(&mut options.env);
    options.env = env;
    let (app, _admin) = admin_app(b, options).await;
    let csrf = app.csrf().await;
    let model_fields = |url: String, key: &'static str| {
        vec![
            ("csrf_token".to_owned(), csrf.clone()),
            ("caption_backend".to_owned(), "openai".to_owned()),
            ("caption_base_url".to_owned(), url),
            ("caption_model".to_owned(), "vision-large".to_owned()),
            ("caption_timeout_secs".to_owned(), "30".to_owned()),
            ("caption_concurrency".to_owned(), "3".to_owned()),
            ("caption_api_key".to_owned(), key.to_owned()),
        ]
    };
    let post = |fields: Vec<(String, String)>| {
        let client = app.client.clone();
        let url = app.url("/admin/settings/model");
        async move { client.post(url).form(&fields).send().await.unwrap() }
    };

    // Bad values: each field says why; nothing saved.
    let r = app
        .post_form(
            "/admin/settings/model",
            &[
                ("csrf_token", csrf.as_str()),
                ("caption_backend", "llama"),
                ("caption_base_url", "ftp://models.example"),
                ("caption_model", ""),
                ("caption_timeout_secs", "0"),
                ("caption_concurrency", "999"),
                ("caption_api_key", "has spaces in it"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 422);
    let page = r.text().await.unwrap();
    for field in [
        "caption_backend",
        "caption_base_url",
        "caption_model",
        "caption_timeout_secs",
        "caption_concurrency",
        "caption_api_key",
    ] {
        assert!(
            page.contains(&format!("href=\"#{field}\"")),
            "{field}: {page}"
        );
    }
    assert!(
        !page.contains("has spaces in it"),
        "a typed key is never shown back"
    );
    assert!(app
        .page("/admin/settings")
        .await
        .contains("comes from the environment"));

    // Saved: the next run's images go to the second model, with the key; another app instance
    // sees it at once.
    let sibling = spawn_sibling(&app, Options::redis(redis.url())).await;
    assert!(sibling
        .page_with(&app.client, "/admin/settings")
        .await
        .contains("comes from the environment"));
    // Credentials in the address are refused (they belong in the sealed key field).
    let r = post(model_fields(
        "http://user:pass@127.0.0.1:9/v1?k=1".into(),
        "",
    ))
    .await;
    assert_eq!(r.status().as_u16(), 422);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("must not hold a user, password"));
    // The first save with the key field empty keeps the environment's key.
    let r = post(model_fields(format!("{}/v1", first.url), "")).await;
    assert_eq!(r.status().as_u16(), 303);
    let audit = app.page("/admin/audit").await;
    assert!(audit.contains("kept (from the environment)"), "{audit}");
    assert!(app.page("/admin/settings").await.contains("A key is set"));
    let r = post(model_fields(format!("{}/v1", second.url), KEY)).await;
    assert_eq!(r.status().as_u16(), 303);
    let page = sibling.page_with(&app.client, "/admin/settings").await;
    assert!(
        page.contains("vision-large") && page.contains("win over the environment"),
        "{page}"
    );
    let alice = app.create_user("alice", "user").await;
    let alices = new_client();
    app.login_with(&alices, "alice", &alice.password).await;
    let (fake, pid) = app
        .connect_flavor_with(&alices, "alice", Flavor::Mastodon)
        .await;
    fake.set(|f| f.posts = vec![FakePost::images(1, &["m1"])]);
    app.set_run_settings(&alices, 50, "0", false).await;
    app.start_run_with(&alices).await;
    let status = app
        .finished_run_with(&alices, Duration::from_secs(20))
        .await;
    assert_eq!(status["drafts_made"], 1, "{status}");
    assert_eq!((first.calls("m1"), second.calls("m1")), (0, 1));
    let auth = second.state.lock().unwrap().authorization.clone();
    assert_eq!(auth, vec![Some(format!("Bearer {KEY}"))]);
    assert_eq!(app.drafts(pid).await[0].model, "vision-large");

    // A blank key keeps the saved one.
    let r = post(model_fields(format!("{}/v1", second.url), "")).await;
    assert_eq!(r.status().as_u16(), 303);
    fake.set(|f| f.posts.insert(0, FakePost::images(2, &["m2"])));
    app.start_run_with(&alices).await;
    app.finished_run_with(&alices, Duration::from_secs(20))
        .await;
    let auth = second.state.lock().unwrap().authorization.clone();
    assert_eq!(
        auth.last().cloned().flatten(),
        Some(format!("Bearer {KEY}"))
    );

    // The key is in no page, no Redis value and not in plain text in the database.
    for path in ["/admin/settings", "/admin/audit", "/admin"] {
        let page = app.page(path).await;
        assert!(!page.contains(KEY), "{path}");
    }
    assert!(app.page("/admin/settings").await.contains("A key is set"));
    fn text(value: &redis::Value) -> String {
        match value {
            redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            redis::Value::SimpleString(s) => s.clone(),
            redis::Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
            redis::Value::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| format!("{} {}", text(k), text(v)))
                .collect::<Vec<_>>()
                .join(" "),
            other => format!("{other:?}"),
        }
    }
    let keys = app.redis_keys(&redis.url()).await;
    assert!(keys.iter().any(|k| k.ends_with("admin:model")), "{keys:?}");
    for key in keys {
        let kind = text(&redis.command(&["TYPE", &key]).await);
        let value = match kind.as_str() {
            "string" => redis.command(&["GET", &key]).await,
            "hash" => redis.command(&["HGETALL", &key]).await,
            _ => continue,
        };
        let value = text(&value);
        assert!(!value.contains(KEY), "{key}: {value}");
        if key.ends_with("admin:model") {
            assert!(value.contains("api_key_sealed"), "{value}");
        }
    }
    let mut conn = app.state.db.conn().await.unwrap();
    let (stored, _) = fedialt::store::admin_settings::get(&mut conn, "model")
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    assert!(!stored.contains(KEY) && stored.contains("api_key_sealed"));

    // Test the model: the saved one answers (a long answer in any script is shown whole); an
    // address nobody listens at gives the error.
    let long = "静かな通りの写真。".repeat(45);
    second.set(|m| m.answer = long.clone());
    let r = app
        .post_form("/admin/settings/model/test", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("The model answered in") && page.contains("vision-large"),
        "{page}"
    );
    assert!(page.contains("静かな通りの写真。"));
    let r = post(model_fields("http://127.0.0.1:1/v1".into(), "")).await;
    assert_eq!(r.status().as_u16(), 303);
    let r = app
        .post_form("/admin/settings/model/test", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("The model test failed"), "{page}");
    // Ollama, the first model, through the form too.
    let r = app
        .post_form(
            "/admin/settings/model",
            &[
                ("csrf_token", csrf.as_str()),
                ("caption_backend", "ollama"),
                ("caption_base_url", first.url.as_str()),
                ("caption_model", "llava:7b"),
                ("caption_timeout_secs", "30"),
                ("caption_concurrency", "2"),
                ("caption_api_key", ""),
                ("clear_api_key", "on"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let page = app
        .post_form("/admin/settings/model/test", &[("csrf_token", &csrf)])
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("The model answered in") && page.contains("No key is set"),
        "{page}"
    );
    let audit = app.page("/admin/audit").await;
    assert!(
        audit.contains("model saved")
            && audit.contains("API key: new key set")
            && audit.contains("API key: kept"),
        "{audit}"
    );
}

/// With Redis unreachable the model is saved in the database and the next run uses it.
async fn the_model_is_saved_and_used_with_redis_unreachable(b: Backend) {
    use crate::fakes::instance::{FakePost, Flavor};
    use crate::fakes::model::FakeModel;
    use crate::services::BlackHole;
    let first = FakeModel::start().await;
    let second = FakeModel::start().await;
    let hole = BlackHole::start().await;
    let mut options = Options::redis(hole.url());
    let mut env = first.env();
    env.append(&mut options.env);
    options.env = env;
    let (app, _admin) = admin_app(b, options).await;
    let csrf = app.csrf().await;
    let started = std::time::Instant::now();
    let r = app
        .post_form(
            "/admin/settings/model",
            &[
                ("csrf_token", csrf.as_str()),
                ("caption_backend", "ollama"),
                ("caption_base_url", second.url.as_str()),
                ("caption_model", "llava:34b"),
                ("caption_timeout_secs", "30"),
                ("caption_concurrency", "2"),
                ("caption_api_key", ""),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(app.page("/admin/settings").await.contains("llava:34b"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no stall on a dead Redis"
    );
    let alice = app.create_user("alice", "user").await;
    let alices = new_client();
    app.login_with(&alices, "alice", &alice.password).await;
    let (fake, pid) = app
        .connect_flavor_with(&alices, "alice", Flavor::Mastodon)
        .await;
    fake.set(|f| f.posts = vec![FakePost::images(1, &["m1"])]);
    app.set_run_settings(&alices, 50, "0", false).await;
    app.start_run_with(&alices).await;
    let status = app
        .finished_run_with(&alices, Duration::from_secs(20))
        .await;
    assert_eq!(status["drafts_made"], 1, "{status}");
    assert_eq!((first.calls("m1"), second.calls("m1")), (0, 1));
    assert_eq!(app.drafts(pid).await[0].model, "llava:34b");
}

both_databases!(
    the_model_is_saved_and_used_with_redis_unreachable,
    the_model_admins_choose_is_used_at_once_and_its_key_stays_secret,
    the_overview_counts_what_matters,
    defaults_reach_everyone_without_settings,
    admins_cancel_and_retry_anyones_runs,
    every_admin_route_is_closed_to_others,
    people_are_created_field_by_field,
    the_last_admin_stays,
    changes_end_sessions_at_once,
    the_people_list_finds_and_pages,
);
