//! Platform connections against fake Mastodon and Pixelfed instances.

use fedialt::store::platforms::PlatformRow;

use crate::both_databases;
use crate::fakes::instance::{FakeInstance, Flavor};
use crate::helpers::*;

impl TestApp {
    pub async fn add_platform_with(
        &self,
        client: &reqwest::Client,
        instance_url: &str,
        token: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let csrf = self.csrf_with(client).await;
        let mut fields = vec![
            ("csrf_token", csrf.as_str()),
            ("instance_url", instance_url),
            ("access_token", token),
        ];
        fields.extend_from_slice(extra);
        self.post_form_with(client, "/platforms", &fields).await
    }

    pub async fn add_platform(&self, instance_url: &str, token: &str) -> reqwest::Response {
        self.add_platform_with(&self.client, instance_url, token, &[])
            .await
    }

    /// Connects by token and expects the 303 of a connection made.
    pub async fn add_platform_ok(&self, instance_url: &str, token: &str) {
        let r = self.add_platform(instance_url, token).await;
        assert_eq!(r.status().as_u16(), 303, "connected {instance_url}");
    }

    pub async fn platform_rows(&self, user_id: i64) -> Vec<PlatformRow> {
        let mut conn = self.state.db.conn().await.unwrap();
        fedialt::store::platforms::for_user(&mut conn, user_id)
            .await
            .unwrap()
    }

    /// Every value this app keeps in a Redis, to check nothing secret is there.
    pub async fn redis_values(&self, redis_url: &str) -> String {
        let client = redis::Client::open(redis_url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut all = String::new();
        for key in self.redis_keys(redis_url).await {
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            all.push_str(&key);
            all.push_str(&String::from_utf8_lossy(&value.unwrap_or_default()));
        }
        all
    }
}

async fn signed_in(b: Backend, options: Options) -> (TestApp, TestUser) {
    let app = spawn_app_with(b, options).await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    (app, user)
}

async fn token_path_success_on_mastodon(b: Backend) {
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.set(|s| s.description_limit = Some(1234));
    fake.add_account("tok-alice-secret", "alice");
    let (app, user) = signed_in(b, Options::default()).await;
    let empty = app.page("/platforms").await;
    assert!(empty.contains("No account connected yet"));

    let r = app.add_platform(&fake.url, "tok-alice-secret").await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(location(&r), "/platforms");
    let page = app.page("/platforms").await;
    assert!(
        page.contains(&format!("Connected @alice@{}", fake.host)),
        "flash"
    );
    assert!(page.contains("Mastodon at"));
    assert!(
        page.contains("1234 characters"),
        "limit read from /api/v2/instance"
    );
    assert!(page.contains("working on this one") && page.contains(">default<"));
    assert!(
        !page.contains("tok-alice-secret"),
        "the token is never in a page"
    );

    let rows = app.platform_rows(user.id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].platform_type, "mastodon");
    assert_eq!(rows[0].description_limit, 1234);
    assert!(!rows[0].access_token_enc.contains("tok-alice-secret"));
    let opened = app
        .state
        .secrets
        .open(
            &fedialt::crypto::token_binding(fedialt::crypto::ACCESS_TOKEN, rows[0].id, user.id),
            &rows[0].access_token_enc,
        )
        .unwrap();
    assert_eq!(opened.expose(), "tok-alice-secret");
    let redis = app.redis_values(SHARED_REDIS).await;
    assert!(redis.contains("alice"), "the record is cached");
    assert!(!redis.contains("tok-alice-secret") && !redis.contains(&rows[0].access_token_enc));
}

async fn token_path_on_pixelfed_and_type_override(b: Backend) {
    let pixelfed = FakeInstance::start(Flavor::Pixelfed).await;
    pixelfed.add_account("pix-token", "bob");
    let mastodon = FakeInstance::start(Flavor::Mastodon).await;
    mastodon.add_account("mas-token", "bob");
    let (app, user) = signed_in(b, Options::default()).await;
    app.add_platform_ok(&pixelfed.url, "pix-token").await;
    let r = app
        .add_platform_with(
            &app.client,
            &mastodon.url,
            "mas-token",
            &[("platform_type", "pixelfed"), ("name", "Photos")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let rows = app.platform_rows(user.id).await;
    assert_eq!(rows[0].platform_type, "pixelfed");
    assert_eq!(rows[0].description_limit, 1000, "Pixelfed's default limit");
    assert_eq!(rows[1].platform_type, "pixelfed", "overridden");
    assert_eq!(rows[1].name, "Photos");
    assert!(rows[0].is_default && !rows[1].is_default);
}

async fn refused_connections_explain_and_save_nothing(b: Backend) {
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.add_account("good-token", "alice");
    let blog = FakeInstance::start(Flavor::NotMastodon).await;
    let (app, user) = signed_in(b, Options::default()).await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            fake.url.clone(),
            "wrong-token-value",
            "did not accept this access token",
            "access_token",
        ),
        (
            closed,
            "good-token",
            "could not reach that instance",
            "instance_url",
        ),
        (
            blog.url.clone(),
            "good-token",
            "does not answer like a Mastodon or Pixelfed instance",
            "instance_url",
        ),
        (
            "https://mastodon.social/@alice".into(),
            "good-token",
            "without a path",
            "instance_url",
        ),
        (
            fake.url.clone(),
            "",
            "Access token is required",
            "access_token",
        ),
    ];
    for (url, token, message, field) in cases {
        let r = app.add_platform(&url, token).await;
        assert_eq!(r.status().as_u16(), 422, "{url}");
        let body = r.text().await.unwrap();
        assert!(body.contains(message), "{message}: {body}");
        assert!(
            body.contains(&format!("href=\"#{field}\"")),
            "links to the field"
        );
        assert!(
            body.contains(&format!("value=\"{}\"", escaped(&url))),
            "input kept"
        );
        assert!(
            token.is_empty() || !body.contains(token),
            "the token is not echoed"
        );
    }
    let r = app
        .add_platform_with(
            &app.client,
            &fake.url,
            "good-token",
            &[("platform_type", "misskey"), ("name", &"x".repeat(61))],
        )
        .await;
    assert_eq!(r.status().as_u16(), 422);
    let body = r.text().await.unwrap();
    assert!(body.contains("Platform type must be mastodon or pixelfed"));
    assert!(body.contains("Name must be at most 60 characters"));
    assert!(app.platform_rows(user.id).await.is_empty());
}

async fn the_private_address_guard(b: Backend) {
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.add_account("good-token", "alice");
    // A "public" instance (exempted from the guard) that redirects to a private address.
    let public = FakeInstance::start_on("127.0.0.2", Flavor::Mastodon).await;
    public.add_account("good-token", "alice");
    public.set(|s| s.redirect_instance_to = Some(format!("{}/api/v1/instance", fake.url)));
    let options = Options::default()
        .with("FEDIALT_ALLOW_PRIVATE_NETWORK", "false")
        .with("FEDIALT_ALLOWED_PRIVATE_ADDRESSES", "127.0.0.2")
        .with("FEDIALT_DNS_OVERRIDES", "social.example=127.0.0.1");
    let (app, user) = signed_in(b, options).await;
    for url in [
        format!("https://127.0.0.1:{}", fake.port),
        format!("https://social.example:{}", fake.port),
        public.url.clone(),
    ] {
        let r = app.add_platform(&url, "good-token").await;
        assert_eq!(r.status().as_u16(), 422, "{url}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("private, loopback or link-local"),
            "{url}: {body}"
        );
    }
    let r = app.add_platform(&fake.url, "good-token").await;
    assert_eq!(r.status().as_u16(), 422);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains(&escaped("must use https://")));
    assert!(app.platform_rows(user.id).await.is_empty());
    // The exempt address itself works when it does not redirect.
    public.set(|s| s.redirect_instance_to = None);
    app.add_platform_ok(&public.url, "good-token").await;
}

async fn the_same_account_again_updates_instead_of_duplicating(b: Backend) {
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.add_account("first-token", "alice");
    let (app, user) = signed_in(b, Options::default()).await;
    app.add_platform_ok(&fake.url, "first-token").await;
    let id = app.platform_rows(user.id).await[0].id;
    {
        let mut conn = app.state.db.conn().await.unwrap();
        fedialt::store::platforms::set_needs_reauth(&mut conn, id, true)
            .await
            .unwrap();
    }
    // The same remote account, a new token.
    let account = fake.state.lock().unwrap().accounts["first-token"].clone();
    fake.set(|s| {
        s.accounts.insert("second-token".into(), account);
    });
    app.add_platform_ok(&fake.url, "second-token").await;
    let page = app.page("/platforms").await;
    assert!(page.contains("was already connected; its token is updated"));
    assert!(!page.contains("Needs a new token"));
    let rows = app.platform_rows(user.id).await;
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].needs_reauth);
    assert_eq!(
        app.state
            .secrets
            .open(
                &fedialt::crypto::token_binding(
                    fedialt::crypto::ACCESS_TOKEN,
                    rows[0].id,
                    rows[0].user_id
                ),
                &rows[0].access_token_enc
            )
            .unwrap()
            .expose(),
        "second-token"
    );
}

async fn rename_default_switch_delete_and_other_peoples_ids(b: Backend) {
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.add_account("a1", "alice");
    fake.add_account("a2", "alice2");
    fake.add_account("m1", "mallory");
    let (app, alice) = signed_in(b, Options::default()).await;
    app.add_platform(&fake.url, "a1").await;
    app.add_platform(&fake.url, "a2").await;
    let rows = app.platform_rows(alice.id).await;
    let (first, second) = (rows[0].id, rows[1].id);

    let mallory = app.create_user("mallory", "user").await;
    let mc = new_client();
    app.login_with(&mc, "mallory", &mallory.password).await;
    app.add_platform_with(&mc, &fake.url, "m1", &[]).await;
    let theirs = app.platform_rows(mallory.id).await[0].id;
    let mtoken = app.csrf_with(&mc).await;
    for action in ["switch", "default", "rename", "delete"] {
        let r = app
            .post_form_with(
                &mc,
                &format!("/platforms/{first}/{action}"),
                &[("csrf_token", &mtoken), ("name", "pwned")],
            )
            .await;
        assert_eq!(r.status().as_u16(), 404, "{action}");
    }
    assert_eq!(
        app.get_with(&mc, &format!("/platforms/{first}/delete"))
            .await
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        app.platform_rows(alice.id).await.len(),
        2,
        "nothing changed"
    );
    assert_eq!(app.platform_rows(alice.id).await[0].name, rows[0].name);

    let token = app.csrf().await;
    // Rename, with a bad name first.
    app.post_form(
        &format!("/platforms/{first}/rename"),
        &[("csrf_token", &token), ("name", "   ")],
    )
    .await;
    let page = app.page("/platforms").await;
    assert!(page.contains("Name must not be empty; the account was not renamed."));
    app.post_form(
        &format!("/platforms/{first}/rename"),
        &[("csrf_token", &token), ("name", "Main account")],
    )
    .await;
    assert!(app.page("/platforms").await.contains("<h2>Main account"));
    // Default.
    app.post_form(
        &format!("/platforms/{second}/default"),
        &[("csrf_token", &token)],
    )
    .await;
    let rows = app.platform_rows(alice.id).await;
    assert!(!rows[0].is_default && rows[1].is_default);
    // Switch: the session works on the chosen one.
    app.post_form(
        &format!("/platforms/{first}/switch"),
        &[("csrf_token", &token)],
    )
    .await;
    let page = app.page("/platforms").await;
    let marker = page.find("working on this one").unwrap();
    assert!(page[..marker].contains("Main account") && !page[..marker].contains("alice2"));
    // Delete: confirmation page, then the delete.
    let confirm = app.page(&format!("/platforms/{second}/delete")).await;
    assert!(confirm.contains("caption settings") && confirm.contains("drafts"));
    let r = app
        .post_form(
            &format!("/platforms/{second}/delete"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(location(&r), "/platforms");
    let rows = app.platform_rows(alice.id).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].is_default, "the remaining one becomes the default");
    assert!(!app
        .page("/platforms")
        .await
        .contains(&format!("id=\"platform-{second}\"")));
    assert_eq!(app.platform_rows(mallory.id).await[0].id, theirs);
}

/// POST /platforms/oauth/start, as the form on /platforms sends it.
async fn oauth_start(app: &TestApp, instance_url: &str) -> reqwest::Response {
    let csrf = app.csrf().await;
    app.post_form(
        "/platforms/oauth/start",
        &[("csrf_token", &csrf), ("instance_url", instance_url)],
    )
    .await
}

async fn oauth_flow(app: &TestApp, fake: &FakeInstance) -> reqwest::Response {
    let start = oauth_start(app, &fake.url).await;
    assert_eq!(
        start.status().as_u16(),
        303,
        "{}",
        start.text().await.unwrap()
    );
    let authorize = location(&start);
    assert!(
        authorize.starts_with(&format!("{}/oauth/authorize?", fake.url)),
        "{authorize}"
    );
    let back = app.client.get(&authorize).send().await.unwrap();
    assert_eq!(back.status().as_u16(), 302);
    let callback = location(&back);
    assert!(
        callback.starts_with(&format!("{}/platforms/oauth/callback?", app.address)),
        "{callback}"
    );
    app.client.get(&callback).send().await.unwrap()
}

async fn oauth_success_on_both_flavours(b: Backend) {
    let mastodon = FakeInstance::start(Flavor::Mastodon).await;
    mastodon.add_account("oauth-token-m", "alice");
    mastodon.set(|s| {
        s.grant_token = Some("oauth-token-m".into());
        s.give_refresh_token = true;
    });
    let pixelfed = FakeInstance::start(Flavor::Pixelfed).await;
    pixelfed.add_account("oauth-token-p", "alice");
    pixelfed.set(|s| s.grant_token = Some("oauth-token-p".into()));
    let (app, user) = signed_in(b, Options::default()).await;

    let done = oauth_flow(&app, &mastodon).await;
    assert_eq!(location(&done), "/platforms");
    let page = app.page("/platforms").await;
    assert!(
        page.contains(&format!("Connected @alice@{}", mastodon.host)),
        "{page}"
    );
    assert_eq!(
        mastodon.state.lock().unwrap().registered_scopes,
        vec!["read:accounts read:statuses write:statuses write:media".to_owned()]
    );
    let done = oauth_flow(&app, &pixelfed).await;
    assert_eq!(location(&done), "/platforms");
    assert_eq!(
        pixelfed.state.lock().unwrap().registered_scopes,
        vec!["read write".to_owned()]
    );

    let rows = app.platform_rows(user.id).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].platform_type, "pixelfed");
    let refresh = rows[0]
        .refresh_token_enc
        .as_deref()
        .expect("refresh token kept");
    assert_eq!(
        app.state
            .secrets
            .open(
                &fedialt::crypto::token_binding(
                    fedialt::crypto::REFRESH_TOKEN,
                    rows[0].id,
                    user.id
                ),
                refresh
            )
            .unwrap()
            .expose(),
        "refresh-oauth-token-m"
    );
    assert!(rows[1].refresh_token_enc.is_none());
    // The app registration is remembered per instance.
    oauth_flow(&app, &mastodon).await;
    assert_eq!(mastodon.state.lock().unwrap().apps.len(), 1);
    assert_eq!(
        app.platform_rows(user.id).await.len(),
        2,
        "the same account again updates it"
    );
}

async fn oauth_state_mismatch_denial_and_instance_error(b: Backend) {
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.add_account("oauth-token", "alice");
    fake.set(|s| s.grant_token = Some("oauth-token".into()));
    let (app, user) = signed_in(b, Options::default()).await;

    // A forged callback (wrong state).
    let start = oauth_start(&app, &fake.url).await;
    let back = app.client.get(location(&start)).send().await.unwrap();
    let callback = location(&back);
    let forged = callback.replace("state=", "state=x");
    let r = app.client.get(&forged).send().await.unwrap();
    let back_to = format!("/platforms?instance_url={}", urlencode(&fake.url));
    assert_eq!(location(&r), back_to, "back to the form, the address in it");
    let page = app.page(&back_to).await;
    assert!(page.contains("the state did not match"));
    assert!(
        page.contains(&format!("value=\"{}\"", escaped(&fake.url))),
        "the address is back in the Connect field: {page}"
    );
    // The real callback no longer works either: the pending state is used up.
    app.client.get(&callback).send().await.unwrap();
    assert!(app
        .page("/platforms")
        .await
        .contains("expired or was already used"));

    fake.set(|s| s.deny = true);
    let r = oauth_flow(&app, &fake).await;
    assert_eq!(location(&r), back_to);
    assert!(app
        .page("/platforms")
        .await
        .contains("authorization was denied"));

    fake.set(|s| {
        s.deny = false;
        s.token_endpoint_fails = true;
    });
    let r = oauth_flow(&app, &fake).await;
    assert_eq!(location(&r), back_to);
    assert!(app
        .page("/platforms")
        .await
        .contains("answered with an error (HTTP 500)"));

    // A refused start shows the page again, with the typed address kept in its field.
    let r = oauth_start(&app, "http://127.0.0.1:1").await;
    assert_eq!(r.status().as_u16(), 422);
    let page = r.text().await.unwrap();
    assert!(page.contains("could not reach that instance"), "{page}");
    assert!(
        page.contains(&format!("value=\"{}\"", escaped("http://127.0.0.1:1"))),
        "the typed address is kept: {page}"
    );
    assert!(app.platform_rows(user.id).await.is_empty());
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn platform_pages_work_with_redis_down(b: Backend) {
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.add_account("t1", "alice");
    fake.add_account("t2", "alice2");
    let mut redis = RedisServer::start().await;
    let (app, user) = signed_in(b, Options::redis(redis.url())).await;
    app.add_platform(&fake.url, "t1").await;
    assert!(app.page("/platforms").await.contains("alice"));
    redis.kill();
    assert_eq!(
        app.add_platform(&fake.url, "t2").await.status().as_u16(),
        303
    );
    let second = app.platform_rows(user.id).await[1].id;
    let token = app.csrf().await;
    for (action, field) in [("rename", "Renamed"), ("default", ""), ("switch", "")] {
        let r = app
            .post_form(
                &format!("/platforms/{second}/{action}"),
                &[("csrf_token", &token), ("name", field)],
            )
            .await;
        assert_eq!(r.status().as_u16(), 303, "{action}");
    }
    let page = app.get("/platforms").await;
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("<h2>Renamed"));
    assert_eq!(
        app.get(&format!("/platforms/{second}/delete"))
            .await
            .status()
            .as_u16(),
        200
    );
    let r = app
        .post_form(
            &format!("/platforms/{second}/delete"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(app.platform_rows(user.id).await.len(), 1);

    // Redis back with what it held before (here: nothing, as a restart without disk): the outbox and
    // the new generation keep stale lists out.
    redis.restart().await;
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            app.redis_status() == fedialt::cache::RedisStatus::Ok
        })
        .await
    );
    let page = app.page("/platforms").await;
    assert!(!page.contains("Renamed") && page.contains("alice"));
}

both_databases!(
    token_path_success_on_mastodon,
    token_path_on_pixelfed_and_type_override,
    refused_connections_explain_and_save_nothing,
    the_private_address_guard,
    the_same_account_again_updates_instead_of_duplicating,
    rename_default_switch_delete_and_other_peoples_ids,
    oauth_success_on_both_flavours,
    oauth_state_mismatch_denial_and_instance_error,
    platform_pages_work_with_redis_down,
);

/// An instance whose /api/v1/instance is missing or odd still connects as Mastodon (1500), since
/// verify_credentials is what proves it speaks the API.
async fn a_minimal_instance_still_connects(b: Backend) {
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.add_account("min-token", "alice");
    fake.set(|s| {
        s.redirect_instance_to = Some("/nowhere".into());
        s.description_limit = None;
    });
    let (app, user) = signed_in(b, Options::default()).await;
    app.add_platform_ok(&fake.url, "min-token").await;
    let rows = app.platform_rows(user.id).await;
    assert_eq!(
        (rows[0].platform_type.as_str(), rows[0].description_limit),
        ("mastodon", 1500)
    );
}

both_databases!(a_minimal_instance_still_connects);
