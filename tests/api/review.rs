//! Reviewing and publishing, end to end against a fake Mastodon and Pixelfed that behave like the
//! real ones (a status edit without media_ids drops the images, a missing spoiler_text clears the
//! warning, PUT /api/v1/media/:id is refused for attached media on Mastodon, a description over
//! the limit is a 422): the post ends up with exactly the approved descriptions and nothing else
//! changed; concurrent approvals, a lost answer, 404, 401, 422, 429 and 5xx; other people's
//! drafts; Redis away or dying.

use std::time::Duration;

use serde_json::Value;

use crate::both_databases;
use crate::fakes::instance::{FakeInstance, FakePost, Flavor};
use crate::fakes::model::FakeModel;
use crate::helpers::*;
use crate::services::{BlackHole, RedisServer};
use fedialt::store::drafts::DraftRow;

struct Setup {
    app: TestApp,
    fake: FakeInstance,
    model: FakeModel,
    platform_id: i64,
}

/// A post as people make them: a content warning, sensitive, German, text with markup-like
/// characters, a focus point on the first image, a described image, a video.
fn rich_post(id: u64) -> FakePost {
    let mut post = FakePost::images(id, &[&format!("a{id}")])
        .with_media(&format!("b{id}"), "image", Some("Described by hand"))
        .with_media(&format!("c{id}"), "image", None)
        .with_media(&format!("v{id}"), "video", None);
    post.media[0].focus = Some((0.5, -0.25));
    post.source = format!("Hallo & <welt> #{id}");
    post.content = format!("<p>Hallo &amp; &lt;welt&gt; #{id}</p>");
    post.spoiler_text = "food".into();
    post.sensitive = true;
    post.language = Some("de".into());
    post
}

async fn setup_with(
    backend: Backend,
    flavor: Flavor,
    posts: Vec<FakePost>,
    options: Options,
) -> Setup {
    let model = FakeModel::start().await;
    let mut env = model.env();
    let mut options = options;
    env.append(&mut options.env);
    options.env = env;
    let app = spawn_app_with(backend, options).await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    let (fake, platform_id) = app.connect_flavor_with(&app.client, "alice", flavor).await;
    fake.set(|s| s.posts = posts);
    app.set_run_settings(&app.client, 50, "0", false).await;
    app.start_run_with(&app.client).await;
    // Carried out here when the app runs no worker of its own.
    app.state.worker.drain().await;
    let status = app
        .finished_run_with(&app.client, Duration::from_secs(30))
        .await;
    assert_eq!(status["state"], "completed", "{status}");
    Setup {
        app,
        fake,
        model,
        platform_id,
    }
}

async fn setup(backend: Backend, posts: Vec<FakePost>) -> Setup {
    setup_with(backend, Flavor::Mastodon, posts, Options::default()).await
}

impl Setup {
    async fn draft(&self, media_id: &str) -> DraftRow {
        self.app
            .drafts(self.platform_id)
            .await
            .into_iter()
            .find(|d| d.media_id == media_id)
            .unwrap_or_else(|| panic!("no draft of {media_id}"))
    }

    async fn act(&self, id: i64, action: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let csrf = self.app.csrf().await;
        let mut all = vec![("csrf_token", csrf.as_str())];
        all.extend_from_slice(fields);
        self.app
            .post_form(&format!("/review/{id}/{action}"), &all)
            .await
    }

    /// The draft's state once it stops changing on its own (publishing ends), within 15 s.
    async fn settled(&self, media_id: &str) -> DraftRow {
        let start = std::time::Instant::now();
        loop {
            let d = self.draft(media_id).await;
            if d.state != "approved" && d.state != "publishing" {
                return d;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "still {} after 15 s",
                d.state
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn post(&self, id: u64) -> FakePost {
        self.fake
            .state
            .lock()
            .unwrap()
            .posts
            .iter()
            .find(|p| p.id == id)
            .cloned()
            .unwrap()
    }

    fn calls_on(&self, id: u64) -> Vec<String> {
        self.fake
            .state
            .lock()
            .unwrap()
            .post_calls
            .iter()
            .filter(|c| c.contains(&format!("/statuses/{id}")))
            .cloned()
            .collect()
    }

    /// The reason the post's publishing job is waiting, if it is.
    async fn job_error(&self, status_id: &str) -> Option<String> {
        use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
        use diesel_async::RunQueryDsl;
        use fedialt::store::schema::publish_jobs as pj;
        let mut conn = self.app.state.db.conn().await.unwrap();
        fedialt::run!(&mut conn, |c| pj::table
            .filter(pj::status_id.eq(status_id))
            .select(pj::error)
            .first::<Option<String>>(c)
            .await
            .optional())
        .unwrap()
        .flatten()
    }

    /// Lets a job waiting out its backoff go now (as if the time had passed), and runs it.
    async fn due_now(&self) {
        use diesel::ExpressionMethods;
        use diesel_async::RunQueryDsl;
        use fedialt::store::schema::publish_jobs as pj;
        let mut conn = self.app.state.db.conn().await.unwrap();
        fedialt::run!(&mut conn, |c| diesel::update(pj::table)
            .set(pj::run_after.eq(0))
            .execute(c)
            .await)
        .unwrap();
        self.app.state.worker.drain_publishing().await;
    }
}

async fn approving_publishes_exactly_the_approved_descriptions(b: Backend) {
    let s = setup(b, vec![rich_post(10)]).await;
    let before = s.post(10);
    let a = s.draft("a10").await;
    let c = s.draft("c10").await;
    assert_eq!(
        s.app.drafts(s.platform_id).await.len(),
        2,
        "a and c need one"
    );

    let r = s
        .act(
            a.id,
            "approve",
            &[("alt_text", "A bowl of ramen, steam rising.")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        location(&r),
        format!("/review?state=pending&page=1#draft-{}", a.id)
    );
    let a = s.settled("a10").await;
    assert_eq!(a.state, "published", "{:?}", a.error);
    assert!(a.edited && a.published_at.is_some());

    let after = s.post(10);
    let mut expected = before.clone();
    expected.media[0].description = Some("A bowl of ramen, steam rising.".into());
    assert_eq!(after, expected, "only a's description changed");
    assert_eq!(
        s.calls_on(10),
        [
            "GET /api/v1/statuses/10",
            "GET /api/v1/statuses/10/source",
            "PUT /api/v1/statuses/10"
        ],
        "three calls: the post, its source, the edit"
    );

    // c approved as drafted, later: a's description stays.
    let r = s.act(c.id, "approve", &[]).await;
    assert_eq!(r.status().as_u16(), 303);
    let c = s.settled("c10").await;
    assert_eq!(c.state, "published");
    assert!(!c.edited);
    let after = s.post(10);
    expected.media[2].description = Some(c.alt_text.clone());
    assert_eq!(after, expected);

    // History lists both with the post's link.
    let history = s.app.page("/history").await;
    assert!(
        history.contains("A bowl of ramen, steam rising."),
        "{history}"
    );
    assert!(history.contains(&escaped(&format!("{}/@alice/10", s.fake.url))));
    // Published drafts offer nothing more to do.
    let page = s.app.page("/review?state=published").await;
    assert!(page.contains(&format!("id=\"draft-{}\"", a.id)));
    assert!(!page.contains(&format!("/review/{}/approve", a.id)));

    // The fake is Mastodon: PUT /api/v1/media/:id on attached media is a 404.
    let token = s
        .fake
        .state
        .lock()
        .unwrap()
        .accounts
        .keys()
        .next()
        .cloned()
        .unwrap();
    let r = reqwest::Client::new()
        .put(format!("{}/api/v1/media/a10", s.fake.url))
        .bearer_auth(token)
        .form(&[("description", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

async fn the_queue_pages_filters_and_reads_well(b: Backend) {
    let posts: Vec<FakePost> = (1..=25u64)
        .rev()
        .map(|id| FakePost::images(id, &[&format!("m{id}")]))
        .collect();
    let s = setup(b, posts).await;
    let drafts = s.app.drafts(s.platform_id).await;
    assert_eq!(drafts.len(), 25);
    // Newest post first.
    let newest = s.draft("m25").await.id;
    let oldest = s.draft("m1").await.id;
    let page = s.app.page("/review").await;
    assert_eq!(
        page.matches("<article class=\"draft review-draft\"")
            .count(),
        20
    );
    assert!(page.contains(&format!("id=\"draft-{newest}\"")));
    assert!(!page.contains(&format!("id=\"draft-{oldest}\"")));
    assert!(page.contains("page 1 of 2"));
    assert!(page.contains("To review <span class=\"count\">(25)</span>"));
    // What a screen reader meets: the thumbnail says what it is, the text area has a label and its
    // count, every action is a button in a form.
    assert!(page.contains("alt=\"The image waiting for a description (the instance's preview)\""));
    assert!(page.contains(&format!("<label for=\"alt-{newest}\">Description</label>")));
    assert!(page.contains(&format!(
        "Approve<span class=\"visually-hidden\"> draft {newest}</span>"
    )));
    assert!(page.contains("<title>Review drafts: To review, page 1 of 2"));
    assert!(page.contains(&format!("aria-describedby=\"count-{newest}\"")));
    assert!(page.contains(&format!("formaction=\"/review/{newest}/approve\"")));
    let second = s.app.page("/review?state=pending&page=2").await;
    assert_eq!(
        second
            .matches("<article class=\"draft review-draft\"")
            .count(),
        5
    );
    assert!(second.contains(&format!("id=\"draft-{oldest}\"")));
    // A page past the end shows the last; an unknown state, the queue.
    let past = s.app.page("/review?page=99").await;
    assert!(past.contains("page 2 of 2"));
    let odd = s.app.page("/review?state=%3Cscript%3E").await;
    assert!(odd.contains("page 1 of 2") && !odd.contains("<script>"));
    // Empty states say what to do.
    let none = s.app.page("/review?state=published").await;
    assert!(none.contains("Nothing is published yet"), "{none}");
}

async fn a_bad_edit_is_refused_and_nothing_is_lost(b: Backend) {
    let s = setup(b, vec![FakePost::images(5, &["m5"])]).await;
    let d = s.draft("m5").await;
    let long = "é".repeat(1501);
    for (text, rule) in [
        ("   ", "must not be empty"),
        (long.as_str(), "has 1501 characters"),
    ] {
        let r = s.act(d.id, "save", &[("alt_text", text)]).await;
        assert_eq!(r.status().as_u16(), 422);
        let page = r.text().await.unwrap();
        assert!(page.contains("alt_text") && page.contains(rule), "{page}");
        assert!(page.contains("aria-invalid=\"true\""));
        if text == long {
            assert!(page.contains(&long), "the typed text is kept");
        }
        let r = s.act(d.id, "approve", &[("alt_text", text)]).await;
        assert_eq!(r.status().as_u16(), 422);
    }
    // For the script: JSON naming the field.
    let csrf = s.app.csrf().await;
    let r = s
        .app
        .client
        .post(s.app.url(&format!("/review/{}/save", d.id)))
        .header("Accept", "application/json")
        .form(&[("csrf_token", csrf.as_str()), ("alt_text", "a\u{202e}b")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(body["errors"]["alt_text"]
        .as_str()
        .unwrap()
        .contains("control"));
    let now = s.draft("m5").await;
    assert_eq!(
        (now.alt_text, now.state, now.version),
        (d.alt_text, d.state, d.version)
    );
    assert_eq!(s.fake.state.lock().unwrap().edits, 0);

    // A good edit by script: saved, edited, the draft's new HTML in the answer.
    let r = s
        .app
        .client
        .post(s.app.url(&format!("/review/{}/save", d.id)))
        .header("Accept", "application/json")
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("alt_text", "A red door.\r\nIt is open."),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["drafts"][0]["state"], "pending");
    assert!(body["drafts"][0]["html"]
        .as_str()
        .unwrap()
        .contains(&format!("id=\"draft-{}\"", d.id)));
    let now = s.draft("m5").await;
    assert_eq!(now.alt_text, "A red door.\nIt is open.");
    assert!(now.edited);
}

async fn other_peoples_drafts_are_not_found(b: Backend) {
    let s = setup(b, vec![FakePost::images(5, &["m5"])]).await;
    let d = s.draft("m5").await;
    let bob = s.app.create_user("bob", "user").await;
    let client = new_client();
    s.app
        .login_with(&client, &bob.username, &bob.password)
        .await;
    let csrf = s.app.csrf_with(&client).await;
    for action in ["save", "approve", "reject", "regenerate", "retry"] {
        let r = s
            .app
            .post_form_with(
                &client,
                &format!("/review/{}/{action}", d.id),
                &[("csrf_token", &csrf), ("alt_text", "Mine now")],
            )
            .await;
        assert_eq!(r.status().as_u16(), 404, "{action}");
    }
    let id = d.id.to_string();
    let r = s
        .app
        .post_form_with(
            &client,
            "/review/bulk",
            &[
                ("csrf_token", &csrf),
                ("action", "approve"),
                ("draft_ids", &id),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 404);
    let r = s
        .app
        .get_with(&client, &format!("/review/status?ids={id}"))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["drafts"], serde_json::json!([]));
    let now = s.draft("m5").await;
    assert_eq!((now.state.as_str(), now.version), ("pending", d.version));
    // A visitor is sent to sign in; a script gets 401 JSON.
    let visitor = new_client();
    let r = visitor.get(s.app.url("/review")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let r = visitor
        .get(s.app.url(&format!("/review/status?ids={id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

async fn an_image_described_meanwhile_is_left_alone(b: Backend) {
    let s = setup(b, vec![rich_post(7)]).await;
    let a = s.draft("a7").await;
    s.fake
        .set(|f| f.posts[0].media[0].description = Some("Written on the instance".into()));
    let before = s.post(7);
    s.act(a.id, "approve", &[]).await;
    let a = s.settled("a7").await;
    assert_eq!(a.state, "already_described");
    assert_eq!(s.post(7), before);
    assert_eq!(s.fake.state.lock().unwrap().edits, 0);
    assert_eq!(s.calls_on(7), ["GET /api/v1/statuses/7"]);
}

async fn approvals_on_one_post_never_wipe_each_other(b: Backend) {
    let s = setup(b, vec![rich_post(8), rich_post(9)]).await;
    // One approval while the other's edit is in flight.
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    s.fake.set(|f| f.hold_edits = Some(hold.clone()));
    let a = s.draft("a8").await;
    let c = s.draft("c8").await;
    s.act(a.id, "approve", &[]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.calls_on(8).contains(&"PUT /api/v1/statuses/8".to_owned())
        })
        .await
    );
    s.act(c.id, "approve", &[]).await;
    hold.add_permits(100);
    assert_eq!(s.settled("a8").await.state, "published");
    assert_eq!(s.settled("c8").await.state, "published");
    let post = s.post(8);
    assert_eq!(post.media[0].description.as_ref(), Some(&a.alt_text));
    assert_eq!(post.media[2].description.as_ref(), Some(&c.alt_text));
    assert_eq!(
        post.media[1].description.as_deref(),
        Some("Described by hand")
    );

    // Two approvals at the same moment.
    let a = s.draft("a9").await;
    let c = s.draft("c9").await;
    let (r1, r2) = tokio::join!(s.act(a.id, "approve", &[]), s.act(c.id, "approve", &[]));
    assert_eq!((r1.status().as_u16(), r2.status().as_u16()), (303, 303));
    assert_eq!(s.settled("a9").await.state, "published");
    assert_eq!(s.settled("c9").await.state, "published");
    let post = s.post(9);
    assert_eq!(post.media[0].description.as_ref(), Some(&a.alt_text));
    assert_eq!(post.media[2].description.as_ref(), Some(&c.alt_text));
    assert_eq!(post.media.len(), 4, "no image lost");
}

async fn a_lost_answer_never_edits_twice(b: Backend) {
    let s = setup(b, vec![rich_post(3)]).await;
    s.fake.set(|f| f.edit_then_fail = 1);
    let a = s.draft("a3").await;
    s.act(a.id, "approve", &[]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.fake.state.lock().unwrap().edits == 1
        })
        .await
    );
    // The job waits out its backoff (the draft approved again meanwhile); then it finds our text
    // on the post and only records it.
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.job_error("3").await.is_some()
        })
        .await
    );
    assert_eq!(s.draft("a3").await.state, "approved");
    s.due_now().await;
    let a = s.settled("a3").await;
    assert_eq!(a.state, "published");
    assert_eq!(s.fake.state.lock().unwrap().edits, 1, "edited once");
    assert_eq!(
        s.calls_on(3)
            .iter()
            .filter(|c| c.starts_with("PUT"))
            .count(),
        1
    );
}

async fn failures_say_why_and_can_be_retried(b: Backend) {
    let s = setup(
        b,
        vec![rich_post(1), rich_post(2), rich_post(3), rich_post(4)],
    )
    .await;
    // 404: the post was deleted.
    let gone = s.draft("a1").await;
    let kept = s
        .fake
        .state
        .lock()
        .unwrap()
        .posts
        .iter()
        .find(|p| p.id == 1)
        .cloned()
        .unwrap();
    s.fake.set(|f| f.posts.retain(|p| p.id != 1));
    s.act(gone.id, "approve", &[]).await;
    let gone = s.settled("a1").await;
    assert_eq!(gone.state, "publish_failed");
    assert!(
        gone.error.as_deref().unwrap().contains("no longer exists"),
        "{:?}",
        gone.error
    );
    // Retry once it is back: published.
    s.fake.set(|f| f.posts.push(kept));
    let page = s.app.page("/review?state=publish_failed").await;
    assert!(page.contains(&format!("formaction=\"/review/{}/retry\"", gone.id)));
    s.act(gone.id, "retry", &[]).await;
    assert_eq!(s.settled("a1").await.state, "published");

    // 422: the instance's own words.
    s.fake.set(|f| f.description_limit = Some(10));
    s.act(s.draft("a2").await.id, "approve", &[]).await;
    let refused = s.settled("a2").await;
    assert_eq!(refused.state, "publish_failed");
    assert!(
        refused
            .error
            .as_deref()
            .unwrap()
            .contains("Description is too long"),
        "{:?}",
        refused.error
    );
    s.fake.set(|f| f.description_limit = Some(1500));

    // 429, then 503: waited out (the 429 for its Retry-After, the 503 with a reason and a
    // backoff), and published.
    s.fake
        .set(|f| f.fail_post_calls = [429, 503].into_iter().collect());
    s.act(s.draft("a3").await.id, "approve", &[]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            use diesel::{QueryDsl, TextExpressionMethods};
            use diesel_async::RunQueryDsl;
            use fedialt::store::schema::publish_jobs as pj;
            let mut conn = s.app.state.db.conn().await.unwrap();
            fedialt::run!(&mut conn, |c| pj::table
                .filter(pj::error.like("%HTTP 503%"))
                .count()
                .get_result::<i64>(c)
                .await)
            .unwrap()
                == 1
        })
        .await,
        "the job waits with a reason"
    );
    // While it waits, the draft is approved again (not stuck "publishing"): it can be withdrawn.
    assert_eq!(s.draft("a3").await.state, "approved");
    s.due_now().await;
    assert_eq!(s.settled("a3").await.state, "published");

    // 401: the token was revoked; the connection is marked.
    s.fake.set(|f| f.accounts.clear());
    s.act(s.draft("a4").await.id, "approve", &[]).await;
    let revoked = s.settled("a4").await;
    assert_eq!(revoked.state, "publish_failed");
    assert!(revoked
        .error
        .as_deref()
        .unwrap()
        .contains("needs a new token"));
    let accounts = s.app.page("/platforms").await;
    assert!(
        accounts.contains("needs a new token") || accounts.contains("Needs a new token"),
        "{accounts}"
    );
}

async fn pixelfed_takes_each_description_on_its_image(b: Backend) {
    let s = setup_with(b, Flavor::Pixelfed, vec![rich_post(6)], Options::default()).await;
    let before = s.post(6);
    let a = s.draft("a6").await;
    s.act(a.id, "approve", &[("alt_text", "A ramen bowl")])
        .await;
    assert_eq!(s.settled("a6").await.state, "published");
    let mut expected = before;
    expected.media[0].description = Some("A ramen bowl".into());
    assert_eq!(s.post(6), expected);
    let calls = s.fake.state.lock().unwrap().post_calls.clone();
    assert_eq!(calls, ["GET /api/v1/statuses/6", "PUT /api/v1/media/a6"]);
}

async fn bulk_approve_and_reject(b: Backend) {
    let s = setup(b, vec![rich_post(1), rich_post(2)]).await;
    let mut ids = Vec::new();
    for m in ["a1", "c1", "a2"] {
        ids.push(s.draft(m).await.id.to_string());
    }
    let csrf = s.app.csrf().await;
    let r = s
        .app
        .post_form(
            "/review/bulk",
            &[
                ("csrf_token", &csrf),
                ("action", "approve"),
                ("draft_ids", &ids[0]),
                ("draft_ids", &ids[1]),
                ("back_state", "pending"),
                ("back_page", "1"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let page = s.app.page("/review").await;
    assert!(page.contains("Approved 2 drafts."), "{page}");
    // By script: JSON with the drafts' new HTML.
    let r = s
        .app
        .client
        .post(s.app.url("/review/bulk"))
        .header("Accept", "application/json")
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("action", "reject"),
            ("draft_ids", &ids[2]),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["drafts"][0]["state"], "rejected");
    assert_eq!(s.settled("a1").await.state, "published");
    assert_eq!(s.settled("c1").await.state, "published");
    assert_eq!(s.draft("a2").await.state, "rejected");
    assert_eq!(
        s.post(1).media[2].description,
        Some(s.draft("c1").await.alt_text)
    );
    // Rejecting a published one is refused with a reason; nothing selected says so.
    let r = s
        .app
        .post_form(
            "/review/bulk",
            &[
                ("csrf_token", &csrf),
                ("action", "reject"),
                ("draft_ids", &ids[0]),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let page = s.app.page("/review").await;
    assert!(page.contains("already published"), "{page}");
    let r = s
        .app
        .post_form(
            "/review/bulk",
            &[("csrf_token", &csrf), ("action", "approve")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(s
        .app
        .page("/review")
        .await
        .contains("Select at least one draft"));
    let r = s
        .app
        .post_form(
            "/review/bulk",
            &[
                ("csrf_token", &csrf),
                ("action", "publish"),
                ("draft_ids", &ids[2]),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(s
        .app
        .page("/review")
        .await
        .contains("must be approve or reject"));
}

async fn regenerate_is_the_persons_call(b: Backend) {
    let s = setup(b, vec![FakePost::images(5, &["m5"])]).await;
    let calls = s.model.calls("m5");
    let d = s.draft("m5").await;
    s.act(d.id, "save", &[("alt_text", "My own words")]).await;
    assert!(s.draft("m5").await.edited);
    s.model.set(|m| m.answer = "Fresh words about {id}.".into());
    let r = s.act(d.id, "regenerate", &[]).await;
    assert_eq!(r.status().as_u16(), 303);
    let now = s.draft("m5").await;
    assert_eq!(now.alt_text, "Fresh words about m5.");
    assert!(!now.edited && now.state == "pending");
    assert_eq!(s.model.calls("m5"), calls + 1);
    // The model failing leaves the draft as it was, with a reason.
    s.model
        .set(|m| m.fail_with = Some((400, "model not found".into())));
    let r = s.act(d.id, "regenerate", &[]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(s.draft("m5").await.alt_text, "Fresh words about m5.");
    assert!(s
        .app
        .page("/review")
        .await
        .contains("No new description could be drafted"));
    // A published draft is not regenerated.
    s.model.set(|m| m.fail_with = None);
    s.act(d.id, "approve", &[]).await;
    assert_eq!(s.settled("m5").await.state, "published");
    let before = s.model.calls("m5");
    s.act(d.id, "regenerate", &[]).await;
    assert_eq!(s.model.calls("m5"), before);
    assert_eq!(s.draft("m5").await.state, "published");
}

async fn review_and_publish_with_redis_unreachable(b: Backend) {
    let hole = BlackHole::start().await;
    let s = setup_with(
        b,
        Flavor::Mastodon,
        vec![rich_post(4)],
        Options::redis(hole.url()),
    )
    .await;
    let started = std::time::Instant::now();
    let page = s.app.page("/review").await;
    let a = s.draft("a4").await;
    assert!(page.contains(&format!("id=\"draft-{}\"", a.id)));
    s.act(a.id, "approve", &[]).await;
    assert_eq!(s.settled("a4").await.state, "published");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no stall on a dead Redis"
    );
}

async fn publishing_goes_on_when_redis_dies_midway(b: Backend) {
    let mut redis = RedisServer::start().await;
    let s = setup_with(
        b,
        Flavor::Mastodon,
        vec![rich_post(4)],
        Options::redis(redis.url()),
    )
    .await;
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    s.fake.set(|f| f.hold_edits = Some(hold.clone()));
    let a = s.draft("a4").await;
    s.act(a.id, "approve", &[]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.calls_on(4).contains(&"PUT /api/v1/statuses/4".to_owned())
        })
        .await
    );
    redis.kill();
    hold.add_permits(10);
    assert_eq!(s.settled("a4").await.state, "published");
    let page = s.app.page("/review?state=published").await;
    assert!(page.contains(&format!("id=\"draft-{}\"", a.id)));
}

async fn the_rate_limit_is_never_overrun(b: Backend) {
    let s = setup(b, vec![rich_post(1), rich_post(2), rich_post(3)]).await;
    // Three calls left in this window, which resets in 3 s: one post's worth.
    s.fake.set(|f| f.post_rate_limit = Some((3, 3)));
    let first = s.draft("a1").await;
    let second = s.draft("a2").await;
    s.act(first.id, "approve", &[]).await;
    assert_eq!(s.settled("a1").await.state, "published");
    s.act(second.id, "approve", &[]).await;
    // The second post waits for the reset instead of calling.
    assert!(
        eventually(Duration::from_secs(10), || async {
            use diesel::{ExpressionMethods, QueryDsl};
            use diesel_async::RunQueryDsl;
            use fedialt::store::schema::publish_jobs as pj;
            let mut conn = s.app.state.db.conn().await.unwrap();
            let waiting: i64 = fedialt::run!(&mut conn, |c| pj::table
                .filter(pj::status_id.eq("2"))
                .filter(pj::run_after.gt(fedialt::store::now()))
                .count()
                .get_result(c)
                .await)
            .unwrap();
            waiting == 1
        })
        .await,
        "the post waits for the rate limit's reset"
    );
    assert_eq!(s.calls_on(2), Vec::<String>::new());
    assert_eq!(s.draft("a2").await.state, "approved");
    // A post approved during the pause waits with the others (any worker, any process).
    s.act(s.draft("a3").await.id, "approve", &[]).await;
    {
        use diesel::{ExpressionMethods, QueryDsl};
        use diesel_async::RunQueryDsl;
        use fedialt::store::schema::publish_jobs as pj;
        let mut conn = s.app.state.db.conn().await.unwrap();
        let run_after: i64 = fedialt::run!(&mut conn, |c| pj::table
            .filter(pj::status_id.eq("3"))
            .select(pj::run_after)
            .first(c)
            .await)
        .unwrap();
        assert!(
            run_after > fedialt::store::now(),
            "the new post waits for the reset too"
        );
    }
    // The window resets: it goes out when the instance said, and no call was ever refused.
    s.fake.set(|f| f.post_rate_limit = Some((300, 300)));
    assert_eq!(s.settled("a2").await.state, "published");
    assert_eq!(s.settled("a3").await.state, "published");
    assert_eq!(s.fake.state.lock().unwrap().rate_limited, 0);
}

async fn what_goes_out_is_what_the_person_last_decided(b: Backend) {
    // No worker in the app: the test runs the publishing itself.
    let s = setup_with(
        b,
        Flavor::Mastodon,
        vec![rich_post(1), rich_post(2), rich_post(3)],
        Options::default().with("FEDIALT_WORKER", "false"),
    )
    .await;
    // Approved, then rejected before any worker took it: nothing is sent.
    let a1 = s.draft("a1").await;
    s.act(a1.id, "approve", &[]).await;
    let r = s.act(a1.id, "reject", &[]).await;
    assert_eq!(r.status().as_u16(), 303);
    s.app.state.worker.drain_publishing().await;
    assert_eq!(s.draft("a1").await.state, "rejected");
    assert_eq!(s.fake.state.lock().unwrap().edits, 0);

    // Bulk: the text typed in the box goes out; a version the page did not show is refused.
    let a2 = s.draft("a2").await;
    let c2 = s.draft("c2").await;
    let csrf = s.app.csrf().await;
    let (ia, ic) = (a2.id.to_string(), c2.id.to_string());
    let stale = (c2.version - 1).to_string();
    let r = s
        .app
        .post_form(
            "/review/bulk",
            &[
                ("csrf_token", csrf.as_str()),
                ("action", "approve"),
                ("draft_ids", &ia),
                ("draft_ids", &ic),
                (&format!("alt_text_{ia}"), "Typed, not saved"),
                (&format!("version_{ia}"), &a2.version.to_string()),
                (&format!("version_{ic}"), &stale),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(s
        .app
        .page("/review")
        .await
        .contains("changed while this was sent"));
    s.app.state.worker.drain_publishing().await;
    assert_eq!(s.draft("a2").await.state, "published");
    assert_eq!(
        s.post(2).media[0].description.as_deref(),
        Some("Typed, not saved")
    );
    assert_eq!(s.draft("c2").await.state, "pending");

    // Retry carries the corrected text; a source without its text fails and changes nothing.
    s.fake.set(|f| f.source_without_text = true);
    let a3 = s.draft("a3").await;
    s.act(a3.id, "approve", &[]).await;
    s.app.state.worker.drain_publishing().await;
    let failed = s.draft("a3").await;
    assert_eq!(failed.state, "publish_failed");
    assert!(
        failed.error.as_deref().unwrap().contains("source"),
        "{:?}",
        failed.error
    );
    assert_eq!(s.post(3), rich_post(3), "the post is untouched");
    s.fake.set(|f| f.source_without_text = false);
    s.act(a3.id, "retry", &[("alt_text", "Corrected words")])
        .await;
    s.app.state.worker.drain_publishing().await;
    assert_eq!(s.draft("a3").await.state, "published");
    let post = s.post(3);
    assert_eq!(
        post.media[0].description.as_deref(),
        Some("Corrected words")
    );
    assert_eq!(
        (post.source.as_str(), post.spoiler_text.as_str()),
        ("Hallo & <welt> #3", "food")
    );

    // A long description in emoji (18 KB as a form) is within the limit.
    let emoji = "😀".repeat(1500);
    let r = s.act(c2.id, "save", &[("alt_text", &emoji)]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(s.draft("c2").await.alt_text, emoji);
}

async fn a_slow_edit_keeps_its_lease_and_edits_once(b: Backend) {
    let s = setup_with(
        b,
        Flavor::Mastodon,
        vec![rich_post(1)],
        Options::default().with("FEDIALT_JOB_LEASE_SECS", "1"),
    )
    .await;
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    s.fake.set(|f| f.hold_edits = Some(hold.clone()));
    s.act(s.draft("a1").await.id, "approve", &[]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.calls_on(1).contains(&"PUT /api/v1/statuses/1".to_owned())
        })
        .await
    );
    // Three leases long; another claim in the meantime would edit again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.app.state.worker.drain_publishing().await;
    hold.add_permits(100);
    assert_eq!(s.settled("a1").await.state, "published");
    assert_eq!(s.fake.state.lock().unwrap().edits, 1);
}

async fn a_429_holds_back_the_whole_account(b: Backend) {
    let s = setup(b, vec![rich_post(1), rich_post(2), rich_post(3)]).await;
    s.fake
        .set(|f| f.fail_post_calls = [429].into_iter().collect());
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for m in ["a1", "a2", "a3"] {
            ids.push(s.draft(m).await.id.to_string());
        }
        ids
    };
    let csrf = s.app.csrf().await;
    let r = s
        .app
        .post_form(
            "/review/bulk",
            &[
                ("csrf_token", csrf.as_str()),
                ("action", "approve"),
                ("draft_ids", &ids[0]),
                ("draft_ids", &ids[1]),
                ("draft_ids", &ids[2]),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    for m in ["a1", "a2", "a3"] {
        assert_eq!(s.settled(m).await.state, "published");
    }
    // One refused call, then three per post: no other post ran into the limit.
    assert_eq!(s.fake.state.lock().unwrap().post_calls.len(), 1 + 3 * 3);
}

async fn the_queue_follows_the_account_asked_for(b: Backend) {
    let s = setup(b, vec![rich_post(1)]).await;
    let run_id = s.app.run_rows().await[0].id;
    // Another account becomes the one worked on: the run's page offers to switch back (a POST).
    let (_other, other_id) = s.app.connect_platform_with(&s.app.client, "alice").await;
    let csrf = s.app.csrf().await;
    let other = other_id.to_string();
    let r = s
        .app
        .post_form(
            &format!("/platforms/{other}/switch"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(location(&r), "/platforms");
    let page = s.app.page(&format!("/runs/{run_id}")).await;
    assert!(
        page.contains(&format!("action=\"/platforms/{}/switch\"", s.platform_id)),
        "{page}"
    );
    let r = s
        .app
        .post_form(
            &format!("/platforms/{}/switch", s.platform_id),
            &[("csrf_token", &csrf), ("next", "/review?state=all")],
        )
        .await;
    assert_eq!(location(&r), "/review?state=all");
    let page = s.app.page("/review?state=all").await;
    assert!(page.contains(&format!("id=\"draft-{}\"", s.draft("a1").await.id)));
    // Only the app's own pages are places to go next.
    let r = s
        .app
        .post_form(
            &format!("/platforms/{}/switch", s.platform_id),
            &[
                ("csrf_token", &csrf),
                ("next", "https://elsewhere.example/"),
            ],
        )
        .await;
    assert_eq!(location(&r), "/platforms");
}

async fn typed_text_survives_a_refusal(b: Backend) {
    let s = setup(b, vec![rich_post(1)]).await;
    let a = s.draft("a1").await;
    // Approved in one tab; the other tab, still showing the box, sends an edit.
    s.act(a.id, "approve", &[]).await;
    assert_eq!(s.settled("a1").await.state, "published");
    let r = s
        .act(
            a.id,
            "save",
            &[("alt_text", "Words I wrote in the other tab")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 409);
    let page = r.text().await.unwrap();
    assert!(page.contains("Words I wrote in the other tab"), "{page}");
    assert!(page.contains("already published"));
    // By script, a bulk approval refused for one draft says so for that draft.
    let c = s.draft("c1").await;
    let csrf = s.app.csrf().await;
    let id = c.id.to_string();
    let long = "x".repeat(1501);
    let r = s
        .app
        .client
        .post(s.app.url("/review/bulk"))
        .header("Accept", "application/json")
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("action", "approve"),
            ("draft_ids", &id),
            (&format!("alt_text_{id}"), &long),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(
        body["drafts"][0]["refused"]
            .as_str()
            .unwrap()
            .contains("1501 characters"),
        "{body}"
    );
    assert_eq!(s.draft("c1").await.state, "pending");
}

async fn one_regenerate_at_a_time_per_person(b: Backend) {
    let s = setup(
        b,
        vec![FakePost::images(5, &["m5"]), FakePost::images(6, &["m6"])],
    )
    .await;
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    s.model.set(|m| m.hold = Some(hold.clone()));
    let first = s.draft("m5").await.id;
    let second = s.draft("m6").await.id;
    let calls = s.model.calls("m5");
    let held = {
        let client = s.app.client.clone();
        let url = s.app.url(&format!("/review/{first}/regenerate"));
        let csrf = s.app.csrf().await;
        tokio::spawn(async move {
            client
                .post(url)
                .form(&[("csrf_token", csrf)])
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.model.calls("m5") > calls
        })
        .await
    );
    let r = s.act(second, "regenerate", &[]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(s
        .app
        .page("/review")
        .await
        .contains("Another of your drafts is being regenerated"));
    hold.add_permits(10);
    assert_eq!(held.await.unwrap().as_u16(), 303);
}

both_databases!(
    typed_text_survives_a_refusal,
    what_goes_out_is_what_the_person_last_decided,
    a_slow_edit_keeps_its_lease_and_edits_once,
    a_429_holds_back_the_whole_account,
    the_queue_follows_the_account_asked_for,
    one_regenerate_at_a_time_per_person,
    the_rate_limit_is_never_overrun,
    approving_publishes_exactly_the_approved_descriptions,
    the_queue_pages_filters_and_reads_well,
    a_bad_edit_is_refused_and_nothing_is_lost,
    other_peoples_drafts_are_not_found,
    an_image_described_meanwhile_is_left_alone,
    approvals_on_one_post_never_wipe_each_other,
    a_lost_answer_never_edits_twice,
    failures_say_why_and_can_be_retried,
    pixelfed_takes_each_description_on_its_image,
    bulk_approve_and_reject,
    regenerate_is_the_persons_call,
    review_and_publish_with_redis_unreachable,
    publishing_goes_on_when_redis_dies_midway,
);
