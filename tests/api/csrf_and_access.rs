use crate::both_databases;
use crate::helpers::*;

async fn visitors_are_sent_to_sign_in_for_get_and_post(b: Backend) {
    let app = spawn_app(b).await;
    assert_eq!(location(&app.get("/").await), "/login");
    assert_eq!(
        location(&app.get("/caption_generation").await),
        "/login?next=%2Fcaption_generation"
    );
    // The sign-in check comes before the CSRF check.
    let r = app
        .post_form("/account/password", &[("new_password", "x")])
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        location(&r),
        "/login?next=%2F",
        "a form's own address only takes POST: not somewhere to come back to"
    );
    // With the page the form was on, back to that page.
    let r = app
        .client
        .post(app.url("/account/password"))
        .header("Referer", app.url("/account"))
        .form(&[("new_password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/login?next=%2Faccount");
    let r = app
        .client
        .post(app.url("/account/password"))
        .header("Referer", "https://evil.example/account")
        .form(&[("new_password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/login?next=%2F", "never another site");
    let r = app.post_form("/logout", &[]).await;
    assert_eq!(r.status().as_u16(), 303);
}

async fn admin_pages_are_forbidden_to_people_without_the_role(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let r = app.get("/admin").await;
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("for administrators"));
    let admin = app.create_user("root", "admin").await;
    let client = new_client();
    app.login_with(&client, &admin.username, &admin.password)
        .await;
    let r = app.get_with(&client, "/admin").await;
    assert_eq!(r.status().as_u16(), 200);
    let r = app.get_with(&client, "/admin/users").await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("alice"));
}

async fn posts_without_the_right_token_are_refused_and_change_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    // Sign-in without the double-submit token.
    let r = app
        .post_form("/login", &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("security token"));
    // A token made up by hand does not pass either.
    let r = app
        .post_form(
            "/login",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf_token", "forged"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(app.session_rows().await, 0);

    app.login(&alice).await;
    for token in ["", "wrong-token"] {
        let r = app
            .post_form(
                "/account/password",
                &[
                    ("csrf_token", token),
                    ("current_password", PASSWORD),
                    ("new_password", "a brand new password"),
                ],
            )
            .await;
        assert_eq!(r.status().as_u16(), 403);
        let r = app.post_form("/logout", &[("csrf_token", token)]).await;
        assert_eq!(r.status().as_u16(), 403);
    }
    // Still signed in, password unchanged.
    assert_eq!(app.get("/account").await.status().as_u16(), 200);
    assert_eq!(
        app.login_with(&new_client(), "alice", PASSWORD)
            .await
            .status()
            .as_u16(),
        303
    );
}

async fn logout_ends_the_session(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.create_user("alice", "user").await;
    let cookie = session_cookie(&app.login(&alice).await);
    let token = app.csrf().await;
    let r = app.post_form("/logout", &[("csrf_token", &token)]).await;
    assert_eq!(location(&r), "/login");
    let page = app.page("/login").await;
    assert!(page.contains("You are signed out."), "flash shown");
    let again = app.page("/login").await;
    assert!(!again.contains("You are signed out."), "flash shown once");
    assert_eq!(
        get_with_cookie(&app, "/account", &cookie)
            .await
            .status()
            .as_u16(),
        303
    );
    assert_eq!(app.session_rows().await, 0);
}

async fn pages_carry_security_headers(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.get("/login").await;
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().contains_key("referrer-policy"));
    assert!(r.headers().contains_key("x-request-id"));
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("<script>") && !body.contains("style="),
        "no inline script or style"
    );
    assert!(body.contains("class=\"skip-link\" href=\"#main\""));
    assert_eq!(body.matches("<h1").count(), 1);
    let missing = app.get("/no/such/page").await;
    assert_eq!(missing.status().as_u16(), 404);
    assert!(missing.text().await.unwrap().contains("Page not found"));
    assert!(
        body.contains("<script src=\"/static/app.js\" defer></script>"),
        "scripts are files, not inline"
    );
    let js = app.get("/static/app.js").await;
    assert_eq!(js.status().as_u16(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let css = app.get("/static/app.css").await;
    assert_eq!(css.status().as_u16(), 200);
    assert!(css.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
}

async fn secure_cookies_behind_https(b: Backend) {
    let app = spawn_app_with(
        b,
        Options::default().with("FEDIALT_PUBLIC_URL", "https://alt.example.org"),
    )
    .await;
    let alice = app.create_user("alice", "user").await;
    let r = app.login(&alice).await;
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-fedialt_session="))
        .expect("under https the session cookie is __Host- prefixed");
    assert!(
        session.contains("Secure") && session.contains("Path=/") && !session.contains("Domain"),
        "{session}"
    );
}

both_databases!(
    visitors_are_sent_to_sign_in_for_get_and_post,
    admin_pages_are_forbidden_to_people_without_the_role,
    posts_without_the_right_token_are_refused_and_change_nothing,
    logout_ends_the_session,
    pages_carry_security_headers,
    secure_cookies_behind_https,
);
