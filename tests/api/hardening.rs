//! Regression tests for what an attacker found: ended sessions that came back, open redirects,
//! OAuth started by a link, a racy sign-in throttle, strangers locking an owner out, counts that
//! outlived a success, tokens that opened in another row, cookies and pages in the wrong shape.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use fedialt::store::schema::sessions;

use crate::both_databases;
use crate::fakes::instance::{FakeInstance, Flavor};
use crate::helpers::*;

/// The session key inside a signed session cookie (its last 43 characters).
fn key_of(cookie: &str) -> String {
    cookie[cookie.len() - 43..].to_owned()
}

async fn session_ids_of(app: &TestApp, user_id: i64) -> Vec<String> {
    let mut conn = app.state.db.conn().await.unwrap();
    fedialt::store::sessions::for_user(&mut conn, user_id, fedialt::store::now())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect()
}

/// A request still running when its session ends (a password change elsewhere, a sign-out, "end
/// session" on /account) finishes as a visitor's: it writes no session, old key or new.
async fn a_slow_request_cannot_bring_back_an_ended_session(b: Backend) {
    for ending in ["password change", "sign-out", "ended from /account"] {
        let app = spawn_app(b).await;
        let alice = app.create_user("alice", "user").await;
        let slow = new_client();
        let other = new_client();
        let slow_cookie = session_cookie(&app.login_with(&slow, "alice", PASSWORD).await);
        app.login_with(&other, "alice", PASSWORD).await;
        let fake = FakeInstance::start(Flavor::Mastodon).await;
        fake.add_account("slow-token", "alice");
        let hold = Arc::new(tokio::sync::Semaphore::new(0));
        fake.set(|s| s.hold_verify = Some(hold.clone()));

        let csrf = app.csrf_with(&slow).await;
        let request = {
            let (client, url, fake_url) = (slow.clone(), app.url("/platforms"), fake.url.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .form(&[
                        ("csrf_token", csrf.as_str()),
                        ("instance_url", fake_url.as_str()),
                        ("access_token", "slow-token"),
                    ])
                    .send()
                    .await
                    .unwrap()
            })
        };
        let arrived = eventually(Duration::from_secs(10), || async {
            fake.state.lock().unwrap().verify_calls == 1
        })
        .await;
        assert!(arrived, "the slow request reached the instance");

        let other_csrf = app.csrf_with(&other).await;
        let ended = match ending {
            "password change" => {
                app.post_form_with(
                    &other,
                    "/account/password",
                    &[
                        ("csrf_token", other_csrf.as_str()),
                        ("current_password", PASSWORD),
                        ("new_password", "a brand new password"),
                    ],
                )
                .await
            }
            "sign-out" => {
                let csrf = app.csrf_with(&slow).await;
                app.post_form_with(&slow, "/logout", &[("csrf_token", csrf.as_str())])
                    .await
            }
            _ => {
                let id = fedialt::sessions::session_id(&key_of(&slow_cookie));
                app.post_form_with(
                    &other,
                    &format!("/account/sessions/{id}/end"),
                    &[("csrf_token", other_csrf.as_str())],
                )
                .await
            }
        };
        assert_eq!(ended.status().as_u16(), 303, "{ending}");
        let live_before = session_ids_of(&app, alice.id).await;

        hold.add_permits(1);
        let response = request.await.unwrap();
        assert_eq!(response.status().as_u16(), 303, "{ending}");
        let returned = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix("fedialt_session="))
            .map(|c| c.split(';').next().unwrap_or("").to_owned());
        if let Some(cookie) = returned {
            let page = get_with_cookie(&app, "/account", &cookie).await;
            assert_eq!(
                location(&page),
                "/login?next=%2Faccount",
                "{ending}: the cookie the slow request got opens nothing"
            );
        }
        assert_eq!(
            location(&app.get_with(&slow, "/account").await),
            "/login?next=%2Faccount",
            "{ending}: the slow client is a visitor"
        );
        assert_eq!(
            session_ids_of(&app, alice.id).await,
            live_before,
            "{ending}: no session was written back or added"
        );
    }
}

/// The expiry slide writes the expiry alone: a change made after the slider read the row is kept,
/// and an ended or expired session is written by neither the slide nor a state update.
async fn the_expiry_slide_keeps_a_concurrent_change(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let limits = app.state.config.session_limits();
    let now = fedialt::store::now();
    let mut conn = app.state.db.conn().await.unwrap();
    let row = fedialt::store::sessions::live(
        &mut conn,
        &session_ids_of(&app, alice.id).await[0],
        now,
        limits,
    )
    .await
    .unwrap()
    .expect("the signed-in session");
    // Another request changes the state after the slider read the row.
    let mut state: HashMap<String, String> = serde_json::from_str(&row.state).unwrap();
    state.insert("marker".into(), "\"changed\"".into());
    let changed = serde_json::to_string(&state).unwrap();
    let written = fedialt::store::sessions::update_state(
        &mut conn,
        &row.id,
        row.user_id,
        &changed,
        now,
        limits,
    )
    .await
    .unwrap()
    .expect("live");
    let slid = fedialt::store::sessions::slide(&mut conn, &row.id, now + 1, limits)
        .await
        .unwrap()
        .expect("live");
    assert_eq!(slid.state, changed, "the slide keeps the newer state");
    assert!(slid.version > written.version);
    let reread = fedialt::store::sessions::live(&mut conn, &row.id, now + 1, limits)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reread.state, changed);

    // Expired: neither writes.
    fedialt::run!(&mut conn, |c| diesel::update(sessions::table.find(&row.id))
        .set(sessions::expires_at.eq(now - 1))
        .execute(c)
        .await)
    .unwrap();
    assert!(
        fedialt::store::sessions::slide(&mut conn, &row.id, now, limits)
            .await
            .unwrap()
            .is_none()
    );
    assert!(fedialt::store::sessions::update_state(
        &mut conn,
        &row.id,
        row.user_id,
        "{}",
        now,
        limits
    )
    .await
    .unwrap()
    .is_none());
}

/// FEDIALT_SESSION_MAX_HOURS: a session used all the time still ends that long after sign-in.
async fn a_session_ends_at_its_absolute_lifetime(b: Backend) {
    let app = spawn_app_with(b, Options::default().with("FEDIALT_SESSION_MAX_HOURS", "1")).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    assert_eq!(app.get("/account").await.status().as_u16(), 200);
    // The Redis copy never outlives the lifetime (the idle timeout, 2 h, is longer).
    let redis = redis::Client::open(SHARED_REDIS).unwrap();
    let mut r = redis.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*session:*", app.prefix))
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut r)
        .await
        .unwrap();
    assert!((1..=3_600_000).contains(&ttl), "TTL {ttl} ms");
    // In the table: signed in an hour and a minute ago, still within its idle timeout.
    let mut conn = app.state.db.conn().await.unwrap();
    fedialt::run!(&mut conn, |c| diesel::update(sessions::table)
        .set(sessions::created_at.eq(sessions::created_at - 3_660))
        .execute(c)
        .await)
    .unwrap();
    drop(conn);
    redis::cmd("DEL")
        .arg(&keys[0])
        .query_async::<()>(&mut r)
        .await
        .unwrap();
    assert_eq!(
        location(&app.get("/account").await),
        "/login?next=%2Faccount",
        "past its lifetime the session is over"
    );
    app.login(&alice).await;
    assert_eq!(
        app.get("/account").await.status().as_u16(),
        200,
        "sign in again"
    );
}

/// POST /platforms/oauth/start as the form sends it.
async fn oauth_start_with(app: &TestApp, client: &reqwest::Client, url: &str) -> reqwest::Response {
    let csrf = app.csrf_with(client).await;
    app.post_form_with(
        client,
        "/platforms/oauth/start",
        &[("csrf_token", csrf.as_str()), ("instance_url", url)],
    )
    .await
}

/// The instance's answer to an authorize request: the callback URL with code and state.
async fn authorize(app: &TestApp, start: &reqwest::Response) -> String {
    let back = app.client.get(location(start)).send().await.unwrap();
    assert_eq!(back.status().as_u16(), 302);
    location(&back)
}

/// Signing in starts from a clean session: a pending OAuth state from before does not survive.
async fn sign_in_starts_from_a_clean_session(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.add_account("oauth-token", "alice");
    fake.set(|s| s.grant_token = Some("oauth-token".into()));
    let signed_in = app.login_with(&app.client, "alice", PASSWORD).await;
    let old_cookie = session_cookie(&signed_in);
    let start = oauth_start_with(&app, &app.client, &fake.url).await;
    assert_eq!(start.status().as_u16(), 303);
    let callback = authorize(&app, &start).await;

    // The same browser signs in again (its cookies sent by hand: the sign-in form's token too).
    let visitor = new_client();
    let page = app.get_with(&visitor, "/login").await;
    let csrf_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("fedialt_csrf="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .unwrap();
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let again = bare
        .post(app.url("/login"))
        .header(
            "Cookie",
            format!("fedialt_session={old_cookie}; fedialt_csrf={csrf_cookie}"),
        )
        .form(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("csrf_token", csrf_cookie.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 303);
    let new_cookie = session_cookie(&again);
    let path = callback.strip_prefix(&app.address).unwrap();
    let r = get_with_cookie(&app, path, &new_cookie).await;
    assert_eq!(location(&r), "/platforms");
    assert!(
        app.platform_rows(alice.id).await.is_empty(),
        "the state from before sign-in was not honoured"
    );
}

/// `next` never leads off the site, whatever it hides, and never makes a 500.
async fn hostile_next_always_means_home(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    let hostile = [
        "/%09/evil.example",
        "/%0B",
        "/%00",
        "/%0A/evil.example",
        "/%0D%0ALocation:%20https://evil.example",
        "/%5Cevil.example",
        "%5C%5Cevil.example",
        "//evil.example",
        "/%2F/evil.example",
        "https://evil.example/",
        "/%20/evil.example",
        "/%C2%A0/evil.example",
        "javascript:alert(1)",
    ];
    let signed_in = new_client();
    app.login_with(&signed_in, "alice", PASSWORD).await;
    for next in hostile {
        let r = app
            .get_with(&signed_in, &format!("/login?next={next}"))
            .await;
        assert_eq!(r.status().as_u16(), 303, "GET next={next}");
        assert_eq!(location(&r), "/", "GET next={next}");

        let client = new_client();
        let page = app.get_with(&client, &format!("/login?next={next}")).await;
        assert_eq!(page.status().as_u16(), 200, "login page with next={next}");
        let token = csrf_from(&page.text().await.unwrap());
        let decoded: String = url::form_urlencoded::parse(format!("n={next}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        let r = client
            .post(app.url("/login"))
            .form(&[
                ("username", "alice"),
                ("password", alice.password.as_str()),
                ("csrf_token", token.as_str()),
                ("next", decoded.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "POST next={next}");
        assert_eq!(location(&r), "/", "POST next={next}");
    }
    let r = app
        .get_with(&signed_in, "/login?next=%2Faccount%3Ftab%3D1")
        .await;
    assert_eq!(
        location(&r),
        "/account?tab=1",
        "a same-site next still works"
    );
}

/// OAuth starts only from the form: a GET is 405 and registers nothing; a POST needs the CSRF
/// token; the state works only in the session that started it.
async fn oauth_starts_only_by_post_in_its_own_session(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.add_account("attacker-token", "mallory");
    fake.set(|s| s.grant_token = Some("attacker-token".into()));

    let r = app
        .get(&format!("/platforms/oauth/start?instance_url={}", fake.url))
        .await;
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("href=\"&#x2F;platforms\"") || page.contains("href=\"/platforms\""),
        "{page}"
    );
    assert!(
        fake.state.lock().unwrap().apps.is_empty(),
        "nothing registered"
    );

    let r = app
        .post_form(
            "/platforms/oauth/start",
            &[
                ("instance_url", fake.url.as_str()),
                ("csrf_token", "forged"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 403);

    // Alice starts; another session (Bob's) takes her callback: refused there, and hers still works.
    let start = oauth_start_with(&app, &app.client, &fake.url).await;
    let callback = authorize(&app, &start).await;
    let bob = app.create_user("bob", "user").await;
    let bobs = new_client();
    app.login_with(&bobs, "bob", PASSWORD).await;
    let r = bobs.get(&callback).send().await.unwrap();
    assert_eq!(location(&r), "/platforms");
    assert!(app.platform_rows(bob.id).await.is_empty());
    let r = app.client.get(&callback).send().await.unwrap();
    assert_eq!(location(&r), "/platforms");
    assert_eq!(app.platform_rows(alice.id).await.len(), 1);
}

/// A sign-in attempt from a fresh client with its own form token.
async fn attempt(
    app: &TestApp,
    username: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let client = new_client();
    let page = app.page_with(&client, "/login").await;
    let token = csrf_from(&page);
    let mut request = client.post(app.url("/login")).form(&[
        ("username", username),
        ("password", password),
        ("csrf_token", token.as_str()),
    ]);
    if let Some(xff) = forwarded_for {
        request = request.header("X-Forwarded-For", xff);
    }
    request.send().await.unwrap()
}

/// 30 wrong passwords at once: at most the limit (5) are ever checked; the rest are 429, and the
/// right password after them is refused too.
async fn parallel_wrong_passwords_check_at_most_the_limit(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    let mut ready = Vec::new();
    for _ in 0..30 {
        let client = new_client();
        let page = app.page_with(&client, "/login").await;
        ready.push((client, csrf_from(&page)));
    }
    let tasks: Vec<_> = ready
        .into_iter()
        .map(|(client, token)| {
            let url = app.url("/login");
            tokio::spawn(async move {
                client
                    .post(url)
                    .form(&[
                        ("username", "alice"),
                        ("password", "wrong password!!"),
                        ("csrf_token", token.as_str()),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for task in tasks {
        *counts.entry(task.await.unwrap()).or_default() += 1;
    }
    // Every attempt is counted before its check; one answered 503 (all checks busy) is taken back.
    let wrong = counts.get(&401).copied().unwrap_or(0);
    assert!(
        (1..=5).contains(&wrong),
        "at most the limit reach the password check: {counts:?}"
    );
    assert_eq!(counts.values().sum::<usize>(), 30, "{counts:?}");
    assert_eq!(
        counts
            .keys()
            .filter(|s| ![401, 429, 503].contains(*s))
            .count(),
        0,
        "{counts:?}"
    );
    if wrong == 5 {
        let r = attempt(&app, "alice", &alice.password, None).await;
        assert_eq!(
            r.status().as_u16(),
            429,
            "the right password is refused too"
        );
    }
}

/// Past the cap on concurrent password checks, sign-in answers 503 with Retry-After at once.
async fn sign_in_past_the_hashing_cap_is_503_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    let held: Vec<_> = std::iter::from_fn(|| app.state.passwords.try_permit().ok()).collect();
    assert!(held.len() >= 2, "the cap has room for at least two");
    let started = Instant::now();
    let r = attempt(&app, "alice", &alice.password, None).await;
    assert_eq!(r.status().as_u16(), 503);
    assert!(started.elapsed() < Duration::from_secs(2), "at once");
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.text().await.unwrap().contains("try again in a moment"));
    drop(held);
    let r = attempt(&app, "alice", &alice.password, None).await;
    assert_eq!(r.status().as_u16(), 303, "in once a check is free");
}

/// Five wrong passwords from a stranger's address lock that address out of the account, not its
/// owner elsewhere; only 50 from everywhere lock the username itself.
async fn strangers_cannot_lock_the_owner_out(b: Backend) {
    let app = spawn_app_with(
        b,
        Options::default().with("FEDIALT_TRUSTED_PROXIES", "127.0.0.1"),
    )
    .await;
    let alice = app.create_user("alice", "user").await;
    for _ in 0..5 {
        let r = attempt(&app, "alice", "wrong password!!", Some("203.0.113.9")).await;
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = attempt(&app, "alice", &alice.password, Some("203.0.113.9")).await;
    assert_eq!(r.status().as_u16(), 429, "that address is paused for alice");
    let r = attempt(&app, "alice", &alice.password, Some("198.51.100.7")).await;
    assert_eq!(r.status().as_u16(), 303, "the owner, elsewhere, gets in");
    // IPv6: one /64 is one address.
    for i in 0..5 {
        let from = format!("2001:db8:7:7::{i:x}");
        let r = attempt(&app, "alice", "wrong password!!", Some(&from)).await;
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = attempt(&app, "alice", &alice.password, Some("2001:db8:7:7::ffff")).await;
    assert_eq!(r.status().as_u16(), 429, "the same /64");

    // Spread over many addresses (4 each), the username's own ceiling (50) still holds.
    let mut statuses = Vec::new();
    for i in 0..13 {
        for _ in 0..4 {
            let from = format!("192.0.2.{}", 10 + i);
            statuses.push(
                attempt(&app, "alice", "wrong password!!", Some(&from))
                    .await
                    .status()
                    .as_u16(),
            );
        }
    }
    // Since the owner's success cleared it, the 5 attempts the /64 above was allowed count (its
    // refused sixth does not): 45 more are checked, then the ceiling.
    assert_eq!(
        statuses.iter().filter(|&&s| s == 401).count(),
        45,
        "{statuses:?}"
    );
    assert!(statuses[45..].iter().all(|&s| s == 429), "{statuses:?}");
    let r = attempt(&app, "alice", &alice.password, Some("192.0.2.200")).await;
    assert_eq!(r.status().as_u16(), 429, "the account itself is paused now");
}

/// Attempts one address was already refused do not count against the username everywhere: one
/// stranger cannot push the account over its ceiling alone.
async fn one_address_cannot_lock_the_account(b: Backend) {
    let app = spawn_app_with(
        b,
        Options::default().with("FEDIALT_TRUSTED_PROXIES", "127.0.0.1"),
    )
    .await;
    let alice = app.create_user("alice", "user").await;
    let mut statuses = Vec::new();
    for i in 0..60 {
        let r = attempt(&app, "alice", &format!("guess {i}"), Some("192.0.2.66")).await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 401).count(),
        5,
        "{statuses:?}"
    );
    let r = attempt(&app, "alice", &alice.password, Some("198.51.100.99")).await;
    assert_eq!(
        r.status().as_u16(),
        303,
        "the owner still gets in from elsewhere"
    );
}

/// Successful sign-ins do not fill the address's count: an office behind one address signs in all
/// morning. Its failures still count.
async fn many_people_signing_in_from_one_address_are_not_locked(b: Backend) {
    let app = spawn_app(b).await;
    let mut people = Vec::new();
    for i in 0..25 {
        people.push(app.create_user(&format!("person{i}"), "user").await);
    }
    for person in &people {
        let r = attempt(&app, &person.username, &person.password, None).await;
        assert_eq!(r.status().as_u16(), 303, "{} signs in", person.username);
    }
    let r = attempt(&app, "person0", "wrong password!!", None).await;
    assert_eq!(
        r.status().as_u16(),
        401,
        "a mistake after all of them is a mistake, not a lock"
    );
}

/// A sign-in that checked the password before a change made while it ran gets no session: the
/// session's row is created only for the credentials the sign-in checked (same transaction).
async fn a_sign_in_racing_a_password_change_gets_no_session(b: Backend) {
    use actix_session::storage::SessionStore;
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    let mut conn = app.state.db.conn().await.unwrap();
    let checked = fedialt::store::users::by_id(&mut conn, alice.id)
        .await
        .unwrap()
        .unwrap();
    // The sign-in has checked the old password; now the password changes.
    assert!(fedialt::store::users::set_password_hash(
        &mut conn,
        alice.id,
        &checked.password_hash,
        checked.credentials_version
    )
    .await
    .unwrap());
    // A second change that verified the same old password loses: it is told, not applied.
    assert!(!fedialt::store::users::set_password_hash(
        &mut conn,
        alice.id,
        "another hash",
        checked.credentials_version
    )
    .await
    .unwrap());
    drop(conn);
    let store = fedialt::sessions::TieredSessionStore::new(
        app.state.db.clone(),
        app.state.cache.clone(),
        true,
        Duration::from_secs(3600),
        Duration::from_secs(7200),
    );
    let state_with = |cv: i64| {
        let user = fedialt::auth::SessionUser {
            uid: fedialt::domain::UserId(alice.id),
            username: "alice".into(),
            role: "user".into(),
            csrf: "x".into(),
            cv,
        };
        HashMap::from([(
            fedialt::sessions::AUTH_KEY.to_owned(),
            serde_json::to_string(&user).unwrap(),
        )])
    };
    let ttl = actix_web::cookie::time::Duration::hours(1);
    let stale = store
        .save(state_with(checked.credentials_version), &ttl)
        .await
        .unwrap();
    assert!(
        SessionStore::load(&store, &stale).await.unwrap().is_none(),
        "the stale sign-in's cookie opens nothing"
    );
    assert!(session_ids_of(&app, alice.id).await.is_empty());
    let fresh = store
        .save(state_with(checked.credentials_version + 1), &ttl)
        .await
        .unwrap();
    assert!(SessionStore::load(&store, &fresh).await.unwrap().is_some());
}

/// However many answers race with one OAuth state (the session writing its old copy back), the
/// state is exchanged once.
async fn an_oauth_state_is_good_once_under_concurrency(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.add_account("oauth-token", "alice");
    fake.set(|s| s.grant_token = Some("oauth-token".into()));
    let start = oauth_start_with(&app, &app.client, &fake.url).await;
    let callback = authorize(&app, &start).await;
    // Extra codes the instance would honour, as an attacker replaying the state would bring.
    let client_id = fake
        .state
        .lock()
        .unwrap()
        .codes
        .values()
        .next()
        .unwrap()
        .1
        .clone();
    let redirect = fake
        .state
        .lock()
        .unwrap()
        .codes
        .values()
        .next()
        .unwrap()
        .2
        .clone();
    let code = callback
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let mut urls = vec![callback.clone()];
    for i in 0..3 {
        let extra = format!("extra-code-{i}");
        fake.set(|s| {
            s.codes.insert(
                extra.clone(),
                ("oauth-token".into(), client_id.clone(), redirect.clone()),
            );
        });
        urls.push(callback.replace(&format!("code={code}"), &format!("code={extra}")));
    }
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let client = app.client.clone();
            tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 303);
    }
    assert_eq!(
        fake.state.lock().unwrap().token_calls,
        1,
        "one answer was exchanged, the others refused"
    );
}

/// Names no account can have, and ids no session can have, are refused before the database sees
/// them (PostgreSQL refuses text with NUL in it: that was a 500).
async fn malformed_names_and_ids_are_refused_not_500(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    for username in ["a\u{0}b", "\u{0}", &"x".repeat(5000)] {
        let r = attempt(&app, username, "whatever password", None).await;
        assert_eq!(r.status().as_u16(), 401, "{username:?}");
    }
    app.login(&alice).await;
    let token = app.csrf().await;
    for id in ["ab%00cd", "abc", &"g".repeat(64)] {
        let r = app
            .post_form(
                &format!("/account/sessions/{id}/end"),
                &[("csrf_token", token.as_str())],
            )
            .await;
        assert_eq!(r.status().as_u16(), 404, "{id}");
    }
    // A flash cookie that does not verify is ignored, not a 400 on every page.
    let r = app
        .client
        .get(app.url("/account"))
        .header("Cookie", "fedialt_flash=forged")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status().as_u16(), 400);
}

/// Two installs that share a Redis and its key prefix by mistake never read each other's values:
/// each database starts its own random cache generation.
async fn installs_sharing_a_redis_stay_apart(b: Backend) {
    let first = spawn_app(b).await;
    let second = spawn_app_on(
        std::sync::Arc::new(TestDatabase::new(b).await),
        Options::default().with("FEDIALT_REDIS_PREFIX", &first.prefix),
    )
    .await;
    let one = first.create_user("alice", "user").await;
    let two = second.create_user("alice", "user").await;
    assert_eq!(one.id, two.id, "the same ids in both databases");
    first.login(&one).await;
    second.login(&two).await;
    first.connect_platform("alice").await;
    let page = first.page("/platforms").await;
    assert!(page.contains("alice (display) on"), "{page}");
    let page = second.page("/platforms").await;
    assert!(
        page.contains("No account connected yet"),
        "the other install's connection is not shown: {page}"
    );
}

/// A success whose Redis clear fails (Redis away) is delivered by the outbox: the old count does
/// not come back with Redis.
async fn a_success_clears_counts_that_redis_held_while_it_was_away(b: Backend) {
    let redis = RedisServer::start().await;
    let app = spawn_app_with(b, Options::redis(redis.url())).await;
    let alice = app.create_user("alice", "user").await;
    for _ in 0..4 {
        let r = attempt(&app, "alice", "wrong password!!", None).await;
        assert_eq!(r.status().as_u16(), 401);
    }
    redis.pause();
    let r = attempt(&app, "alice", &alice.password, None).await;
    assert_eq!(r.status().as_u16(), 303, "sign-in works without Redis");
    assert!(
        app.outbox_rows().await >= 2,
        "the clear waits in the outbox"
    );
    redis.resume();
    let drained = eventually(Duration::from_secs(15), || async {
        app.outbox_rows().await == 0 && app.redis_status() == fedialt::cache::RedisStatus::Ok
    })
    .await;
    assert!(drained, "the outbox reached Redis");
    for i in 0..5 {
        let r = attempt(&app, "alice", "wrong password!!", None).await;
        assert_eq!(
            r.status().as_u16(),
            401,
            "attempt {i}: the old count is gone"
        );
    }
    let r = attempt(&app, "alice", &alice.password, None).await;
    assert_eq!(r.status().as_u16(), 429, "and counting goes on in Redis");
}

/// Tokens sealed before they were bound to their row are re-sealed at start; a sealed token moved
/// to another row does not open there.
async fn tokens_are_sealed_to_their_row_and_owner(b: Backend) {
    use fedialt::crypto::{token_binding, ACCESS_TOKEN, REFRESH_TOKEN};
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    let bob = app.create_user("bob", "user").await;
    let alices = new_client();
    app.login_with(&alices, "alice", PASSWORD).await;
    let (_fa, alice_pid) = app.connect_platform_with(&alices, "alice").await;
    let bobs = new_client();
    app.login_with(&bobs, "bob", PASSWORD).await;
    let (_fb, bob_pid) = app.connect_platform_with(&bobs, "bob").await;

    // A row as it was stored before this change: sealed with its purpose only.
    let secrets = &app.state.secrets;
    let mut conn = app.state.db.conn().await.unwrap();
    let legacy = secrets.seal(ACCESS_TOKEN, "legacy-access").unwrap();
    let legacy_refresh = secrets.seal(REFRESH_TOKEN, "legacy-refresh").unwrap();
    fedialt::store::platforms::set_tokens(&mut conn, alice_pid, &legacy, Some(&legacy_refresh), 1)
        .await
        .unwrap();
    drop(conn);
    let sibling = spawn_sibling(&app, Options::default()).await;
    let row = app.platform_rows(alice.id).await.remove(0);
    assert_eq!(row.token_seal, fedialt::crypto::TOKEN_SEAL_BOUND);
    let opened = sibling
        .state
        .secrets
        .open(
            &token_binding(ACCESS_TOKEN, alice_pid, alice.id),
            &row.access_token_enc,
        )
        .unwrap();
    assert_eq!(opened.expose(), "legacy-access");
    let refresh = row.refresh_token_enc.as_deref().unwrap();
    assert_eq!(
        secrets
            .open(&token_binding(REFRESH_TOKEN, alice_pid, alice.id), refresh)
            .unwrap()
            .expose(),
        "legacy-refresh"
    );
    assert!(secrets.open(ACCESS_TOKEN, &row.access_token_enc).is_err());
    // Alice's sealed token copied into Bob's row opens for neither Bob's row nor Bob.
    assert!(secrets
        .open(
            &token_binding(ACCESS_TOKEN, bob_pid, bob.id),
            &row.access_token_enc
        )
        .is_err());
    assert!(secrets
        .open(
            &token_binding(ACCESS_TOKEN, alice_pid, bob.id),
            &row.access_token_enc
        )
        .is_err());
}

/// Under https: the visitor's CSRF cookie is `__Host-` and Secure, HSTS is sent, the flash cookie
/// is Secure. Under plain http: neither prefix nor Secure, so every message reaches the person.
async fn cookies_follow_the_public_url(b: Backend) {
    let http = spawn_app(b).await;
    let r = http.get("/login").await;
    assert!(r.headers().get("strict-transport-security").is_none());
    let csrf = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("fedialt_csrf="))
        .expect("the sign-in form's cookie");
    assert!(!csrf.contains("Secure"), "{csrf}");
    assert!(csrf.contains("Max-Age=7200"), "{csrf}");
    // A flash over plain http is not Secure (so a LAN address shows it).
    let alice = http.create_user("alice", "user").await;
    http.login(&alice).await;
    let (_fake, id) = http.connect_platform("alice").await;
    let token = http.csrf().await;
    let r = http
        .post_form(
            &format!("/platforms/{id}/rename"),
            &[("csrf_token", token.as_str()), ("name", "bad\u{202e}name")],
        )
        .await;
    let flash = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("fedialt_flash="))
        .expect("a flash cookie");
    assert!(!flash.contains("Secure"), "{flash}");
    let page = http.page("/platforms").await;
    assert!(page.contains("invisible text-direction marks"), "{page}");
    assert!(!page.contains("bad\u{202e}name"));

    let https = spawn_app_with(
        b,
        Options::default().with("FEDIALT_PUBLIC_URL", "https://fedialt.example"),
    )
    .await;
    let r = https.get("/login").await;
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let csrf = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-fedialt_csrf="))
        .expect("a __Host- cookie under https");
    assert!(
        csrf.contains("Secure") && csrf.contains("Path=/") && !csrf.contains("Domain"),
        "{csrf}"
    );
    let token = csrf["__Host-fedialt_csrf=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let bob = https.create_user("bob", "user").await;
    let signed_in = bare
        .post(https.url("/login"))
        .header("Cookie", format!("__Host-fedialt_csrf={token}"))
        .form(&[
            ("username", bob.username.as_str()),
            ("password", PASSWORD),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status().as_u16(), 303);
    // The unprefixed cookie is not accepted under https.
    let r = bare
        .post(https.url("/login"))
        .header("Cookie", format!("fedialt_csrf={token}"))
        .form(&[
            ("username", bob.username.as_str()),
            ("password", PASSWORD),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

/// What actix-web refuses by itself comes in the app's shape: the 404 page for an id that is not a
/// number, an HTML page for a malformed form, JSON on JSON routes for 400, 413 and 415.
async fn extractor_failures_answer_in_the_apps_shape(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    app.connect_platform("alice").await;
    let token = app.csrf().await;

    let r = app.get("/platforms/abc/delete").await;
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Page not found") && !body.contains("can not parse"),
        "{body}"
    );

    let r = app
        .client
        .post(app.url("/platforms/1/rename"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415, "a form route refuses JSON");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    let api = |body: Vec<u8>, content_type: &'static str| {
        let request = app
            .client
            .post(app.url("/api/update_user_settings"))
            .header("X-CSRF-Token", token.clone())
            .header("content-type", content_type)
            .body(body);
        async move { request.send().await.unwrap() }
    };
    for (body, content_type, status) in [
        (b"{not json".to_vec(), "application/json", 400),
        (b"[1, 2]".to_vec(), "application/json", 400),
        (b"max_posts_per_run=3".to_vec(), "text/plain", 415),
        (vec![b' '; 300 * 1024], "application/json", 413),
    ] {
        let r = api(body, content_type).await;
        assert_eq!(
            r.status().as_u16(),
            status,
            "{content_type} {:?}",
            r.headers()
        );
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{status} is JSON"
        );
        let json: serde_json::Value = r.json().await.unwrap();
        assert!(
            json["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
    }
}

/// What an instance says of an account is cleaned and cut before it is stored and shown.
async fn instance_names_are_cleaned_and_cut(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.add_account("tok", "alice");
    let long = format!("Evil\u{202e}gpj.exe {}", "x".repeat(500));
    fake.set(|s| {
        s.account_override = Some((long.clone(), format!("al\u{2066}ice{}", "y".repeat(500))))
    });
    let token = app.csrf().await;
    let r = app
        .post_form(
            "/platforms",
            &[
                ("csrf_token", token.as_str()),
                ("instance_url", fake.url.as_str()),
                ("access_token", "tok"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let row = app.platform_rows(alice.id).await.remove(0);
    for text in [&row.display_name, &row.account_username, &row.name] {
        assert!(
            !text.chars().any(fedialt::domain::is_hidden_control),
            "{text:?}"
        );
    }
    assert!(row.display_name.chars().count() <= 100);
    assert!(row.account_username.chars().count() <= 300);
    assert!(row.name.chars().count() <= 60, "{}", row.name);
}

both_databases!(
    a_slow_request_cannot_bring_back_an_ended_session,
    the_expiry_slide_keeps_a_concurrent_change,
    a_session_ends_at_its_absolute_lifetime,
    sign_in_starts_from_a_clean_session,
    hostile_next_always_means_home,
    oauth_starts_only_by_post_in_its_own_session,
    parallel_wrong_passwords_check_at_most_the_limit,
    sign_in_past_the_hashing_cap_is_503_at_once,
    strangers_cannot_lock_the_owner_out,
    a_success_clears_counts_that_redis_held_while_it_was_away,
    tokens_are_sealed_to_their_row_and_owner,
    cookies_follow_the_public_url,
    extractor_failures_answer_in_the_apps_shape,
    instance_names_are_cleaned_and_cut,
    one_address_cannot_lock_the_account,
    many_people_signing_in_from_one_address_are_not_locked,
    a_sign_in_racing_a_password_change_gets_no_session,
    an_oauth_state_is_good_once_under_concurrency,
    malformed_names_and_ids_are_refused_not_500,
    installs_sharing_a_redis_stay_apart,
);
