use crate::both_databases;
use crate::helpers::*;

async fn sign_in_success(b: Backend) {
    let app = spawn_app(b).await;
    let user = app.create_user("alice", "user").await;
    let response = app.login(&user).await;
    assert_eq!(location(&response), "/");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("fedialt_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"));
    assert!(cookie.contains("SameSite=Lax"));
    assert!(!cookie.contains("Secure"), "http public URL: not Secure");
    let home = app.get("/").await;
    assert_eq!(location(&home), "/caption_generation");
    let page = app.get("/caption_generation").await;
    assert_eq!(
        location(&page),
        "/platforms",
        "no account yet: connect one first"
    );
    let mut conn = app.state.db.conn().await.unwrap();
    let row = fedialt::store::users::by_id(&mut conn, user.id)
        .await
        .unwrap()
        .unwrap();
    assert!(row.last_login_at.is_some());
}

async fn sign_in_goes_to_a_same_site_next_only(b: Backend) {
    let app = spawn_app(b).await;
    let user = app.create_user("alice", "user").await;
    let visitor = app.get("/account").await;
    assert_eq!(location(&visitor), "/login?next=%2Faccount");
    for (next, expected) in [
        ("/account", "/account"),
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
    ] {
        let client = new_client();
        let page = app
            .get_with(&client, &format!("/login?next={}", urlencode(next)))
            .await
            .text()
            .await
            .unwrap();
        let token = csrf_from(&page);
        let response = client
            .post(app.url("/login"))
            .form(&[
                ("username", "alice"),
                ("password", user.password.as_str()),
                ("csrf_token", &token),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 303);
        assert_eq!(location(&response), expected);
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn assert_refused(app: &TestApp, username: &str, password: &str) {
    let client = new_client();
    let response = app.login_with(&client, username, password).await;
    assert_eq!(response.status().as_u16(), 401, "{username}");
    assert!(response
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap().starts_with("fedialt_session=")));
    let body = response.text().await.unwrap();
    assert_eq!(
        body.matches("do not match an active account").count(),
        1,
        "one message"
    );
    assert_eq!(
        location_of_signed_in(app, &client).await,
        "/login?next=%2Faccount"
    );
}

async fn location_of_signed_in(app: &TestApp, client: &reqwest::Client) -> String {
    location(&app.get_with(client, "/account").await)
}

async fn wrong_password_unknown_user_and_inactive_user_get_one_message(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.create_user_full("ghost", "user", false).await;
    assert_refused(&app, "alice", "not the password at all").await;
    assert_refused(&app, "nobody", PASSWORD).await;
    assert_refused(&app, "ghost", PASSWORD).await;
    // Still fine with the right password.
    app.login(&alice).await;
}

/// Five wrong passwords for the user, then the right one: refused with 429 and Retry-After.
async fn locked_out(app: &TestApp, user: &TestUser) -> reqwest::Response {
    for _ in 0..5 {
        let r = app
            .login_with(&new_client(), &user.username, "wrong password!!")
            .await;
        assert_eq!(r.status().as_u16(), 401);
    }
    let response = app
        .login_with(&new_client(), &user.username, &user.password)
        .await;
    assert_eq!(
        response.status().as_u16(),
        429,
        "locked even with the right password"
    );
    assert!(response.headers().contains_key("retry-after"));
    response
}

async fn throttle_locks_a_username_even_with_the_right_password(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    let response = locked_out(&app, &alice).await;
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    let body = response.text().await.unwrap();
    assert!(body.contains("try again in 15 minutes"), "{body}");
    // Another username from the same address is not locked by the username's count.
    let bob = app.create_user("bob", "user").await;
    app.login(&bob).await;
}

async fn success_clears_the_username_count(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    for _ in 0..4 {
        app.login_with(&new_client(), "alice", "wrong password!!")
            .await;
    }
    assert_eq!(
        app.login_with(&new_client(), "alice", &alice.password)
            .await
            .status()
            .as_u16(),
        303
    );
    for _ in 0..4 {
        app.login_with(&new_client(), "alice", "wrong password!!")
            .await;
    }
    assert_eq!(
        app.login_with(&new_client(), "alice", &alice.password)
            .await
            .status()
            .as_u16(),
        303
    );
}

async fn throttle_counts_in_the_database_without_redis(b: Backend) {
    let app = spawn_app_with(
        b,
        Options::redis(format!("redis://127.0.0.1:{}/0", free_port())),
    )
    .await;
    let alice = app.create_user("alice", "user").await;
    let response = locked_out(&app, &alice).await;
    assert!(response.headers().contains_key("retry-after"));
}

async fn address_throttle_and_trusted_proxies(b: Backend) {
    let app = spawn_app_with(
        b,
        Options::default().with("FEDIALT_TRUSTED_PROXIES", "127.0.0.1"),
    )
    .await;
    let carol = app.create_user("carol", "user").await;
    // 20 failures from one forwarded address, spread over usernames so none hits its own limit.
    for i in 0..20 {
        let client = new_client();
        let page = app.page_with(&client, "/login").await;
        let token = csrf_from(&page);
        let r = client
            .post(app.url("/login"))
            .header("X-Forwarded-For", "203.0.113.9")
            .form(&[
                ("username", format!("user{}", i % 5).as_str()),
                ("password", "wrong password!!"),
                ("csrf_token", &token),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let attempt = |xff: &'static str| {
        let app = &app;
        let password = carol.password.clone();
        async move {
            let client = new_client();
            let page = app.page_with(&client, "/login").await;
            let token = csrf_from(&page);
            client
                .post(app.url("/login"))
                .header("X-Forwarded-For", xff)
                .form(&[
                    ("username", "carol"),
                    ("password", password.as_str()),
                    ("csrf_token", &token),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(attempt("203.0.113.9").await, 429, "the address is locked");
    assert_eq!(attempt("198.51.100.7").await, 303, "another address is not");
}

async fn login_page_says_how_to_create_the_first_admin(b: Backend) {
    let app = spawn_app(b).await;
    let page = app.page("/login").await;
    assert!(page.contains("fedialt create-admin"));
    assert!(
        page.contains("cargo run -- create-admin"),
        "the form for people who started it with cargo run too"
    );
    app.create_user("admin", "admin").await;
    let page = app.page("/login").await;
    assert!(!page.contains("fedialt create-admin"));
}

async fn anonymous_login_page_writes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    app.create_user("alice", "user").await;
    for _ in 0..3 {
        let r = app.get("/login").await;
        assert_eq!(r.status().as_u16(), 200);
        assert!(r
            .headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("fedialt_session=")));
    }
    assert_eq!(app.session_rows().await, 0);
    assert!(app
        .redis_keys(SHARED_REDIS)
        .await
        .iter()
        .all(|k| !k.contains("session:")));
}

async fn session_id_is_renewed_at_sign_in(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    let page = app.page("/login").await;
    let token = csrf_from(&page);
    let form = [
        ("username", "alice"),
        ("password", alice.password.as_str()),
        ("csrf_token", token.as_str()),
    ];
    let first = session_cookie(&app.post_form("/login", &form).await);
    // Signing in again from a signed-in browser gives a new session id.
    let second = session_cookie(&app.post_form("/login", &form).await);
    assert_ne!(first, second);
    // The old one no longer signs anyone in.
    let r = get_with_cookie(&app, "/account", &first).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        get_with_cookie(&app, "/account", &second)
            .await
            .status()
            .as_u16(),
        200
    );
}

both_databases!(
    sign_in_success,
    sign_in_goes_to_a_same_site_next_only,
    wrong_password_unknown_user_and_inactive_user_get_one_message,
    throttle_locks_a_username_even_with_the_right_password,
    success_clears_the_username_count,
    throttle_counts_in_the_database_without_redis,
    address_throttle_and_trusted_proxies,
    login_page_says_how_to_create_the_first_admin,
    anonymous_login_page_writes_nothing,
    session_id_is_renewed_at_sign_in,
);
