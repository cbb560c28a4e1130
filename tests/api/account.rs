use crate::both_databases;
use crate::helpers::*;

async fn ending_another_session_signs_it_out(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    let bob = app.create_user("bob", "user").await;
    let laptop = new_client();
    let phone = new_client();
    app.login_with(&laptop, "alice", PASSWORD).await;
    let phone_cookie = session_cookie(&app.login_with(&phone, "alice", PASSWORD).await);
    let page = app.page_with(&laptop, "/account").await;
    assert_eq!(
        page.matches("End session").count(),
        1,
        "the other session can be ended"
    );
    assert!(page.contains("This session"));
    let phone_id = fedialt::sessions::session_id(&urldecode_cookie(&phone_cookie));
    assert!(page.contains(&phone_id));

    // Someone else's session id: 404, nothing ended.
    let bobs = new_client();
    app.login_with(&bobs, &bob.username, &bob.password).await;
    let bob_token = app.csrf_with(&bobs).await;
    let r = app
        .post_form_with(
            &bobs,
            &format!("/account/sessions/{phone_id}/end"),
            &[("csrf_token", &bob_token)],
        )
        .await;
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        app.get_with(&phone, "/account").await.status().as_u16(),
        200
    );

    let token = app.csrf_with(&laptop).await;
    let r = app
        .post_form_with(
            &laptop,
            &format!("/account/sessions/{phone_id}/end"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(location(&r), "/account");
    assert_eq!(
        location(&app.get_with(&phone, "/account").await),
        "/login?next=%2Faccount"
    );
    assert_eq!(
        app.get_with(&laptop, "/account").await.status().as_u16(),
        200
    );
    let _ = alice;
}

/// A signed session cookie is `<base64 HMAC><key>`; the key is its last 43 characters.
fn urldecode_cookie(cookie: &str) -> String {
    cookie[cookie.len() - 43..].to_owned()
}

async fn changing_the_password_ends_the_other_sessions(b: Backend) {
    let app = spawn_app(b).await;
    app.create_user("alice", "user").await;
    let laptop = new_client();
    let phone = new_client();
    app.login_with(&laptop, "alice", PASSWORD).await;
    app.login_with(&phone, "alice", PASSWORD).await;
    let token = app.csrf_with(&laptop).await;

    // Wrong current password, and too short a new one: 422, nothing changed.
    let r = app
        .post_form_with(
            &laptop,
            "/account/password",
            &[
                ("csrf_token", &token),
                ("current_password", "not it at all"),
                ("new_password", "short"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 422);
    let body = r.text().await.unwrap();
    assert!(body.contains("Current password: this is not your current password."));
    assert!(body.contains("New password: must be at least 12 characters long."));
    assert!(body.contains("href=\"#current_password\"") && body.contains("href=\"#new_password\""));
    assert_eq!(
        app.get_with(&phone, "/account").await.status().as_u16(),
        200
    );

    let r = app
        .post_form_with(
            &laptop,
            "/account/password",
            &[
                ("csrf_token", &token),
                ("current_password", PASSWORD),
                ("new_password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(location(&r), "/account");
    let page = app.page_with(&laptop, "/account").await;
    assert!(page.contains("Password changed. Your other session was signed out."));
    assert_eq!(
        location(&app.get_with(&phone, "/account").await),
        "/login?next=%2Faccount"
    );
    assert_eq!(
        app.login_with(&new_client(), "alice", PASSWORD)
            .await
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        app.login_with(&new_client(), "alice", "a brand new password")
            .await
            .status()
            .as_u16(),
        303
    );
}

/// Each session says which browser and system it is and where it signed in from.
async fn sessions_show_their_browser_and_address(b: Backend) {
    let app = spawn_app(b).await;
    app.create_user("alice", "user").await;
    let firefox = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0")
        .build()
        .unwrap();
    let phone = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        )
        .build()
        .unwrap();
    app.login_with(&firefox, "alice", PASSWORD).await;
    app.login_with(&phone, "alice", PASSWORD).await;
    let page = app.page_with(&firefox, "/account").await;
    assert!(page.contains("Firefox on Linux"), "{page}");
    assert!(page.contains("Safari on iPhone"), "{page}");
    assert_eq!(page.matches("<td>127.0.0.1</td>").count(), 2, "{page}");
}

/// The same password again is refused: it would sign out every other session for nothing.
async fn a_new_password_must_differ(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let token = app.csrf().await;
    let r = app
        .post_form(
            "/account/password",
            &[
                ("csrf_token", token.as_str()),
                ("current_password", PASSWORD),
                ("new_password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 422);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("must differ from the current one"));
}

both_databases!(
    ending_another_session_signs_it_out,
    a_new_password_must_differ,
    changing_the_password_ends_the_other_sessions,
    sessions_show_their_browser_and_address,
);

async fn housekeeping_removes_expired_sessions_and_old_counters(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let now = fedialt::store::now();
    let mut conn = app.state.db.conn().await.unwrap();
    fedialt::store::sessions::insert(
        &mut conn,
        &fedialt::store::sessions::SessionRow {
            id: "expired".into(),
            user_id: Some(alice.id),
            state: "{}".into(),
            version: 1,
            created_at: now - 10_000,
            last_seen_at: now - 9_000,
            expires_at: now - 1,
            user_agent: None,
            signed_in_from: None,
        },
    )
    .await
    .unwrap();
    fedialt::store::throttle::record_attempt(&mut conn, "user:old", 900, now - 2_000)
        .await
        .unwrap();
    fedialt::store::throttle::record_attempt(&mut conn, "user:fresh", 900, now)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(app.session_rows().await, 2);
    let (sessions, throttles) = fedialt::sweep::sweep_once(&app.state.db).await.unwrap();
    assert_eq!((sessions, throttles), (1, 1));
    assert_eq!(app.session_rows().await, 1, "the live session stays");
    assert_eq!(app.get("/account").await.status().as_u16(), 200);
    let mut conn = app.state.db.conn().await.unwrap();
    assert!(
        fedialt::store::throttle::get(&mut conn, "user:fresh", 900, now)
            .await
            .unwrap()
            .is_some()
    );
}

both_databases!(housekeeping_removes_expired_sessions_and_old_counters);
