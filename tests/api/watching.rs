//! Watching accounts for new posts, end to end: a fake Mastodon with its streaming API on a host
//! of its own (server-sent events with Mastodon's event names and payloads, heartbeat comments) and
//! a Pixelfed fake without streaming; the real worker (in the app, or `fedialt worker`
//! processes); real databases and Redis.

use std::time::{Duration, Instant};

use crate::both_databases;
use crate::fakes::instance::{FakeInstance, FakePost, Flavor};
use crate::fakes::model::FakeModel;
use crate::helpers::*;
use crate::runs::{fedialt_process, options_with, tempdir_for_worker, worker_env};
use crate::services::{BlackHole, RedisServer};
use fedialt::store::drafts::DraftRow;
use fedialt::store::watches::WatchRow;

/// A post made now (its created_at is the present), one undescribed image per media id.
fn new_post(id: u64, media: &[&str]) -> FakePost {
    let mut post = FakePost::images(id, media);
    post.created_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    post
}

struct Watched {
    app: TestApp,
    fake: FakeInstance,
    model: FakeModel,
    platform_id: i64,
}

fn watch_options(model: &FakeModel, options: Options) -> Options {
    options_with(model, options.with("FEDIALT_WATCH_POLL_SECS", "1"))
}

/// An app whose person watches one account that already has an old post with an undescribed
/// image (which watching must leave to runs).
async fn watched(b: Backend, flavor: Flavor, auto_publish: bool, options: Options) -> Watched {
    let model = FakeModel::start().await;
    let app = spawn_app_with(b, watch_options(&model, options)).await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    let (fake, platform_id) = app.connect_flavor_with(&app.client, "alice", flavor).await;
    fake.set(|s| {
        s.posts = vec![FakePost::images(100, &["old100"])];
        s.heartbeat = Duration::from_millis(200);
    });
    let r = app.set_watch(platform_id, true, auto_publish).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(location(&r), "/platforms");
    let w = Watched {
        app,
        fake,
        model,
        platform_id,
    };
    let want = if flavor == Flavor::Mastodon {
        "stream"
    } else {
        "poll"
    };
    w.mode_becomes(want).await;
    w
}

impl TestApp {
    async fn set_watch(&self, platform_id: i64, watch: bool, auto: bool) -> reqwest::Response {
        let csrf = self.csrf().await;
        let mut fields = vec![("csrf_token", csrf.as_str())];
        if watch {
            fields.push(("watch", "on"));
        }
        if auto {
            fields.push(("auto_publish", "on"));
        }
        self.post_form(&format!("/platforms/{platform_id}/watch"), &fields)
            .await
    }

    async fn watch_row(&self, platform_id: i64) -> Option<WatchRow> {
        let mut conn = self.state.db.conn().await.unwrap();
        fedialt::store::watches::get(&mut conn, platform_id)
            .await
            .unwrap()
    }

    async fn post_jobs(&self, platform_id: i64) -> Vec<fedialt::store::post_jobs::PostJob> {
        let mut conn = self.state.db.conn().await.unwrap();
        fedialt::store::post_jobs::for_platform(&mut conn, platform_id)
            .await
            .unwrap()
    }
}

impl Watched {
    async fn mode_becomes(&self, mode: &str) {
        let reached = eventually(Duration::from_secs(20), || async {
            self.app
                .watch_row(self.platform_id)
                .await
                .is_some_and(|w| w.mode.as_deref() == Some(mode))
        })
        .await;
        assert!(
            reached,
            "the watch reaches mode {mode}: {:?}",
            self.app.watch_row(self.platform_id).await
        );
    }

    /// The drafts of these images, once each has one (within `limit`).
    async fn drafted(&self, media: &[&str], limit: Duration) -> Vec<DraftRow> {
        let start = Instant::now();
        loop {
            let drafts = self.app.drafts(self.platform_id).await;
            let found: Vec<DraftRow> = media
                .iter()
                .filter_map(|m| drafts.iter().find(|d| d.media_id == *m).cloned())
                .collect();
            if found.len() == media.len() {
                return found;
            }
            assert!(
                start.elapsed() < limit,
                "no drafts of {media:?} after {limit:?}; drafts: {:?}; jobs: {:?}",
                drafts.iter().map(|d| &d.media_id).collect::<Vec<_>>(),
                self.app.post_jobs(self.platform_id).await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn description(&self, post: u64, media: &str) -> Option<String> {
        self.fake
            .state
            .lock()
            .unwrap()
            .posts
            .iter()
            .find(|p| p.id == post)
            .and_then(|p| p.media.iter().find(|m| m.id == media))
            .and_then(|m| m.description.clone())
    }
}

/// A new post on Mastodon is drafted from the stream within the deadline (a minute; here far
/// less): only its undescribed image, nothing of the older post, and nothing published.
async fn a_new_post_is_drafted_from_the_stream(b: Backend) {
    let w = watched(b, Flavor::Mastodon, false, Options::default()).await;
    let page = w.app.page("/caption_generation").await;
    assert!(page.contains("<strong>Watched</strong>"), "{page}");
    assert!(page.contains("live as you post"), "{page}");
    assert!(
        page.contains("No new post seen since watching began"),
        "{page}"
    );

    let started = Instant::now();
    w.fake.publish_post(new_post(200, &["new200"]).with_media(
        "done200",
        "image",
        Some("Described by hand"),
    ));
    let drafts = w.drafted(&["new200"], Duration::from_secs(60)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "drafted in {took:?}");
    assert_eq!(drafts[0].state, "pending", "waits for review");
    assert_eq!(drafts[0].status_id, "200");
    assert!(!drafts[0].alt_text.is_empty());
    let all = w.app.drafts(w.platform_id).await;
    assert_eq!(
        all.len(),
        1,
        "only the new post's undescribed image: {all:?}"
    );
    assert_eq!(w.model.calls("old100"), 0);
    assert_eq!(w.fake.state.lock().unwrap().edits, 0, "nothing published");
    // The stream was read at the host the instance names, not the API's.
    assert!(w.fake.state.lock().unwrap().stream_opens >= 1);
    let page = w.app.page("/caption_generation").await;
    assert!(page.contains("Last new post seen"), "{page}");
    assert!(page.contains(&escaped("/@alice/200")), "{page}");
    // The navigation counts it.
    assert!(page.contains("1 waiting"), "{page}");
}

/// With "publish without review", a new post's description goes onto the post; the edit comes
/// back as a status.update event and is not taken for new work (no loop), and a second post is
/// handled the same way.
async fn auto_publish_publishes_and_own_edits_do_not_loop(b: Backend) {
    let w = watched(b, Flavor::Mastodon, true, Options::default()).await;
    w.fake.publish_post(new_post(300, &["a300"]));
    let text = w.drafted(&["a300"], Duration::from_secs(30)).await[0]
        .alt_text
        .clone();
    let published = eventually(Duration::from_secs(30), || async {
        w.description(300, "a300").as_deref() == Some(text.as_str())
    })
    .await;
    assert!(published, "the description is on the post");
    // A second post after the first's edit event: by the time it is drafted, the stream has
    // delivered the edit before it.
    w.fake.publish_post(new_post(301, &["a301"]));
    w.drafted(&["a301"], Duration::from_secs(30)).await;
    let both = eventually(Duration::from_secs(30), || async {
        let drafts = w.app.drafts(w.platform_id).await;
        drafts.len() == 2 && drafts.iter().all(|d| d.state == "published")
    })
    .await;
    assert!(both, "{:?}", w.app.drafts(w.platform_id).await);
    assert!(w.description(301, "a301").is_some());
    let jobs = w.app.post_jobs(w.platform_id).await;
    assert_eq!(
        jobs.len(),
        2,
        "one job per post, none from fedialt's own edits: {jobs:?}"
    );
    assert!(
        jobs.iter().all(|j| j.state == "done" && j.attempts == 1),
        "{jobs:?}"
    );
    assert_eq!(w.model.calls("a300"), 1);
    assert_eq!(w.fake.state.lock().unwrap().edits, 2, "one edit per post");
    let drafts = w.app.drafts(w.platform_id).await;
    assert!(drafts.iter().all(|d| d.state == "published"), "{drafts:?}");
    assert!(drafts.iter().all(|d| d.auto_published), "{drafts:?}");
    // The person can tell which descriptions nobody read first.
    let history = w.app.page("/history").await;
    assert_eq!(
        history.matches("Published without review").count(),
        2,
        "{history}"
    );
    let review = w.app.page("/review?state=all").await;
    assert!(review.contains("published without review"), "{review}");
}

/// A post deleted on the instance takes its pending drafts with it; a post edited to add an
/// image gets that image drafted (and nothing drafted twice).
async fn deletes_and_edits_on_the_instance(b: Backend) {
    let w = watched(b, Flavor::Mastodon, false, Options::default()).await;
    w.fake.publish_post(new_post(400, &["a400"]));
    w.drafted(&["a400"], Duration::from_secs(30)).await;
    w.fake.delete_post(400);
    let gone = eventually(Duration::from_secs(20), || async {
        w.app.drafts(w.platform_id).await.is_empty()
    })
    .await;
    assert!(gone, "the deleted post's pending draft went");

    w.fake.publish_post(new_post(401, &["a401"]));
    w.drafted(&["a401"], Duration::from_secs(30)).await;
    // The person adds an image to the post on the instance (an edit event).
    let mut edited = new_post(401, &["a401", "b401"]);
    edited.content = "<p>with another picture</p>".into();
    w.fake.set(|s| s.posts.retain(|p| p.id != 401));
    w.fake.publish_post_as_edit(edited);
    w.drafted(&["b401"], Duration::from_secs(30)).await;
    assert_eq!(
        w.model.calls("a401"),
        1,
        "the first image is not drafted again"
    );
}

/// The stream drops; two posts are made before it is back (its server refuses for a moment):
/// the catch-up finds both, each drafted once, and the stream is read again.
async fn a_dropped_stream_resumes_and_misses_nothing(b: Backend) {
    let w = watched(b, Flavor::Mastodon, false, Options::default()).await;
    let opens = w.fake.state.lock().unwrap().stream_opens;
    w.fake.set(|s| s.streaming = false);
    w.fake.drop_streams();
    w.fake.add_post_quietly(new_post(500, &["a500"]));
    w.fake.add_post_quietly(new_post(501, &["a501"]));
    w.drafted(&["a500", "a501"], Duration::from_secs(30)).await;
    w.mode_becomes("poll").await;
    let page = w.app.page("/caption_generation").await;
    assert!(page.contains("until the live connection is back"), "{page}");
    w.fake.set(|s| s.streaming = true);
    w.mode_becomes("stream").await;
    assert!(w.fake.state.lock().unwrap().stream_opens > opens);
    // A post after the stream is back comes from it.
    w.fake.publish_post(new_post(502, &["a502"]));
    w.drafted(&["a502"], Duration::from_secs(30)).await;
    for m in ["a500", "a501", "a502"] {
        assert_eq!(w.model.calls(m), 1, "{m} drafted once");
    }
    assert_eq!(w.app.post_jobs(w.platform_id).await.len(), 3);
}

/// Pixelfed has no streaming API: the account is polled every FEDIALT_WATCH_POLL_SECS.
async fn pixelfed_is_polled(b: Backend) {
    let w = watched(b, Flavor::Pixelfed, true, Options::default()).await;
    let page = w.app.page("/caption_generation").await;
    assert!(page.contains("checked every second"), "{page}");
    assert!(!page.contains("until the live connection"), "{page}");
    let page = w.app.page("/platforms").await;
    assert!(page.contains("Pixelfed has no live updates"), "{page}");
    w.fake.add_post_quietly(new_post(600, &["a600"]));
    let text = w.drafted(&["a600"], Duration::from_secs(20)).await[0]
        .alt_text
        .clone();
    let published = eventually(Duration::from_secs(20), || async {
        w.description(600, "a600").as_deref() == Some(text.as_str())
    })
    .await;
    assert!(published, "published through Pixelfed's media update");
    let queries = w.fake.state.lock().unwrap().statuses_queries.clone();
    assert!(
        queries.iter().any(|q| q.contains("since_id=")),
        "polled with since_id: {queries:?}"
    );
    assert_eq!(w.fake.state.lock().unwrap().stream_opens, 0);
}

/// 401: watching stops, the connection is marked as needing a new token and the caption page
/// says so; connecting it again resumes watching from the last post seen.
async fn a_refused_token_stops_watching_until_reconnected(b: Backend) {
    let w = watched(b, Flavor::Mastodon, false, Options::default()).await;
    let token = w
        .fake
        .state
        .lock()
        .unwrap()
        .accounts
        .keys()
        .next()
        .unwrap()
        .clone();
    let account = w.fake.state.lock().unwrap().accounts[&token].clone();
    w.fake.set(|s| s.accounts.clear());
    w.fake.drop_streams();
    let stopped = eventually(Duration::from_secs(20), || async {
        w.app
            .watch_row(w.platform_id)
            .await
            .is_some_and(|r| r.problem.is_some() && r.lease_owner.is_none())
    })
    .await;
    assert!(stopped, "{:?}", w.app.watch_row(w.platform_id).await);
    let page = w.app.page("/caption_generation").await;
    assert!(page.contains("refused fedialt"), "{page}");
    assert!(page.contains("needs a new token"), "{page}");
    let opens = w.fake.state.lock().unwrap().stream_opens;
    // A post made while the token is refused.
    w.fake.add_post_quietly(new_post(700, &["a700"]));

    // The person connects the account again (the same token works again).
    w.fake
        .set(|s| drop(s.accounts.insert(token.clone(), account.clone())));
    let csrf = w.app.csrf().await;
    let r = w
        .app
        .post_form(
            "/platforms",
            &[
                ("csrf_token", &csrf),
                ("instance_url", &w.fake.url),
                ("access_token", &token),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    w.drafted(&["a700"], Duration::from_secs(30)).await;
    w.mode_becomes("stream").await;
    assert!(w.fake.state.lock().unwrap().stream_opens > opens);
    let row = w.app.watch_row(w.platform_id).await.unwrap();
    assert_eq!(row.problem, None, "the problem is cleared");
}

/// 429 on the stream and on the timeline: waited out (Retry-After), and the post still drafted.
async fn rate_limits_are_waited_out(b: Backend) {
    let w = watched(b, Flavor::Mastodon, false, Options::default()).await;
    w.fake.set(|s| {
        s.streaming = true;
        s.stream_refusals = [429, 429].into();
        s.rate_limit = Some((1, 2));
    });
    let asked_before = w.fake.state.lock().unwrap().statuses_queries.len();
    w.fake.drop_streams();
    w.fake.add_post_quietly(new_post(800, &["a800"]));
    w.drafted(&["a800"], Duration::from_secs(30)).await;
    w.mode_becomes("stream").await;
    let state = w.fake.state.lock().unwrap();
    assert!(state.stream_refusals.is_empty(), "both refusals were met");
    assert!(state.rate_limit.is_none(), "both 429s were met");
    // After each 429 the watcher waited the second it was told before asking again.
    let times: Vec<Instant> = state
        .request_times
        .iter()
        .filter(|(what, _)| what == "statuses")
        .skip(asked_before)
        .map(|(_, at)| *at)
        .collect();
    assert!(times.len() >= 3, "{times:?}");
    for pair in times.windows(2).take(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(900),
            "asked again {:?} after a 429",
            pair[1] - pair[0]
        );
    }
}

/// Redis unreachable from the start: settings save, the page shows them, posts are drafted.
async fn watching_works_with_redis_unreachable(b: Backend) {
    let hole = BlackHole::start().await;
    let w = watched(b, Flavor::Mastodon, true, Options::redis(hole.url())).await;
    w.fake.publish_post(new_post(900, &["a900"]));
    let text = w.drafted(&["a900"], Duration::from_secs(30)).await[0]
        .alt_text
        .clone();
    let published = eventually(Duration::from_secs(30), || async {
        w.description(900, "a900").as_deref() == Some(text.as_str())
    })
    .await;
    assert!(published);
    let page = w.app.page("/platforms").await;
    assert!(page.contains("Watched since"), "{page}");
}

/// Redis dies while an account is watched: new posts are still drafted, the pages answer, and
/// what the page shows is not older once Redis is back.
async fn watching_goes_on_when_redis_dies(b: Backend) {
    let mut redis = RedisServer::start().await;
    let w = watched(b, Flavor::Mastodon, false, Options::redis(redis.url())).await;
    w.app.page("/caption_generation").await;
    redis.kill();
    w.fake.publish_post(new_post(950, &["a950"]));
    w.drafted(&["a950"], Duration::from_secs(30)).await;
    let start = Instant::now();
    let page = w.app.page("/caption_generation").await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "not stalled by a dead Redis"
    );
    assert!(page.contains(&escaped("/@alice/950")), "{page}");
    redis.restart().await;
    let fresh = eventually(Duration::from_secs(20), || async {
        w.app
            .page("/caption_generation")
            .await
            .contains(&escaped("/@alice/950"))
    })
    .await;
    assert!(fresh, "the page shows the last post after Redis came back");
}

/// The form: checkboxes only; another person's connection is a 404; nothing changes on refusal;
/// turning watching off and on again starts from the posts made after.
async fn the_watch_form_checks_what_it_is_sent(b: Backend) {
    let model = FakeModel::start().await;
    let app = spawn_app_with(b, watch_options(&model, Options::default())).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let (_fake, platform_id) = app
        .connect_flavor_with(&app.client, "alice", Flavor::Mastodon)
        .await;
    let page = app.page("/platforms").await;
    assert!(page.contains("Watch for new posts"), "{page}");
    assert!(page.contains("Publish drafts without review"), "{page}");
    assert!(page.contains("Only while watching is on"), "{page}");
    let page = app.page("/caption_generation").await;
    assert!(page.contains("Not watched"), "{page}");

    let csrf = app.csrf().await;
    let r = app
        .post_form(
            &format!("/platforms/{platform_id}/watch"),
            &[("csrf_token", &csrf), ("watch", "maybe")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let page = app.page("/platforms").await;
    assert!(
        page.contains("Watch for new posts is a checkbox"),
        "the field and the rule: {page}"
    );
    assert!(app.watch_row(platform_id).await.is_none(), "nothing saved");

    let r = app
        .post_form(
            &format!("/platforms/{platform_id}/watch"),
            &[("watch", "on")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 403, "no CSRF token");
    assert!(app.watch_row(platform_id).await.is_none());

    app.set_watch(platform_id, true, true).await;
    let row = app.watch_row(platform_id).await.unwrap();
    assert!(row.enabled && row.auto_publish && row.enabled_at.is_some());
    let page = app.page("/platforms").await;
    assert!(page.contains("Publish drafts without review"), "{page}");
    assert!(page.contains("Careful:"), "the plain warning: {page}");
    assert!(page.contains("descriptions of new posts are published without review"));

    // Someone else cannot touch it.
    let client = new_client();
    let bob = app.create_user("bob", "user").await;
    app.login_with(&client, &bob.username, &bob.password).await;
    let csrf = app.csrf_with(&client).await;
    let r = app
        .post_form_with(
            &client,
            &format!("/platforms/{platform_id}/watch"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status().as_u16(), 404);
    assert!(app.watch_row(platform_id).await.unwrap().enabled);

    // Off, then a second instance of the app shows it at once (the cached value moved with it).
    app.set_watch(platform_id, false, true).await;
    let sibling = spawn_sibling(&app, watch_options(&model, Options::default())).await;
    let cookie = app
        .login_with(&new_client(), &alice.username, &alice.password)
        .await;
    let page = get_with_cookie(&sibling, "/caption_generation", &session_cookie(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Not watched"), "{page}");
    let row = app.watch_row(platform_id).await.unwrap();
    assert!(!row.enabled && row.lease_owner.is_none());
}

/// `fedialt worker` restarted: a post made while no worker ran is drafted by the next one.
async fn a_post_made_while_the_worker_was_down_is_drafted() {
    let model = FakeModel::start().await;
    let app = spawn_app_with(
        Backend::Postgres,
        watch_options(&model, Options::default().with("FEDIALT_WORKER", "false")),
    )
    .await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    let (fake, platform_id) = app
        .connect_flavor_with(&app.client, "alice", Flavor::Mastodon)
        .await;
    fake.set(|s| s.heartbeat = Duration::from_millis(200));
    app.set_watch(platform_id, true, false).await;
    // A post made before any worker looked, dated like an old one: the account had no post when
    // watching was turned on, so every post that appears is new (no clock is trusted).
    fake.add_post_quietly(FakePost::images(990, &["early990"]));
    let dir = tempdir_for_worker();
    let mut env = worker_env(&app, &model, &dir);
    env.push(("FEDIALT_WATCH_POLL_SECS".into(), "1".into()));
    let mut worker = fedialt_process("worker", env.clone());
    let live = eventually(Duration::from_secs(30), || async {
        app.watch_row(platform_id)
            .await
            .is_some_and(|w| w.mode.as_deref() == Some("stream"))
    })
    .await;
    assert!(live);
    fake.publish_post(new_post(1000, &["a1000"]));
    let first = eventually(Duration::from_secs(30), || async {
        app.drafts(platform_id).await.len() == 2
    })
    .await;
    assert!(first);
    unsafe {
        libc::kill(worker.id() as i32, libc::SIGTERM);
    }
    let _ = tokio::task::spawn_blocking(move || worker.wait()).await;
    let row = app.watch_row(platform_id).await.unwrap();
    assert!(row.lease_owner.is_none(), "given back on the way out");
    fake.add_post_quietly(new_post(1001, &["a1001"]));
    let mut worker = fedialt_process("worker", env);
    let caught = eventually(Duration::from_secs(30), || async {
        app.drafts(platform_id).await.len() == 3
    })
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
    let _ = std::fs::remove_dir_all(dir);
    assert!(caught, "{:?}", app.drafts(platform_id).await);
    for m in ["early990", "a1000", "a1001"] {
        assert_eq!(model.calls(m), 1, "{m} drafted once");
    }
}

/// Two `fedialt worker` processes, ten watched accounts: each account has exactly one stream
/// open; one worker is killed, and the other takes its accounts over within the lease; every new
/// post is drafted once.
async fn two_workers_share_ten_accounts_and_take_over_a_dead_ones() {
    let model = FakeModel::start().await;
    let app = spawn_app_with(
        Backend::Postgres,
        watch_options(&model, Options::default().with("FEDIALT_WORKER", "false")),
    )
    .await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    let fake = FakeInstance::start(Flavor::Mastodon).await;
    fake.set(|s| s.heartbeat = Duration::from_millis(200));
    let mut accounts = Vec::new();
    for n in 0..10 {
        let token = format!("token-{n}-{}", random_suffix());
        let account = fake.add_account(&token, &format!("user{n}"));
        let csrf = app.csrf().await;
        let r = app
            .post_form(
                "/platforms",
                &[
                    ("csrf_token", &csrf),
                    ("instance_url", &fake.url),
                    ("access_token", &token),
                ],
            )
            .await;
        assert_eq!(r.status().as_u16(), 303);
        accounts.push(account.id);
    }
    let ids: Vec<i64> = {
        let mut conn = app.state.db.conn().await.unwrap();
        let user_id = fedialt::store::users::by_username(&mut conn, "alice")
            .await
            .unwrap()
            .unwrap()
            .id;
        fedialt::store::platforms::for_user(&mut conn, user_id)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect()
    };
    assert_eq!(ids.len(), 10);
    for id in &ids {
        app.set_watch(*id, true, false).await;
    }
    let dir = tempdir_for_worker();
    let mut env = worker_env(&app, &model, &dir);
    env.push(("FEDIALT_WATCH_POLL_SECS".into(), "1".into()));
    env.push(("FEDIALT_JOB_LEASE_SECS".into(), "3".into()));
    let mut first = fedialt_process("worker", env.clone());
    let mut second = fedialt_process("worker", env);
    let all_live = eventually(Duration::from_secs(30), || async {
        let mut live = 0;
        for id in &ids {
            if app
                .watch_row(*id)
                .await
                .is_some_and(|w| w.mode.as_deref() == Some("stream"))
            {
                live += 1;
            }
        }
        live == 10 && fake.open_streams() == 10
    })
    .await;
    assert!(
        all_live,
        "ten streams, one per account: {}",
        fake.open_streams()
    );
    let per_account = |fake: &FakeInstance| {
        let state = fake.state.lock().unwrap();
        let mut counts = std::collections::HashMap::new();
        for (account, tx) in &state.streams {
            if !tx.is_closed() {
                *counts.entry(account.clone()).or_insert(0) += 1;
            }
        }
        counts
    };
    let counts = per_account(&fake);
    assert!(
        accounts.iter().all(|a| counts.get(a) == Some(&1)),
        "each account watched once: {counts:?}"
    );
    let _ = first.kill(); // SIGKILL: no goodbye, its leases run out
    let _ = first.wait();
    let killed_at = Instant::now();
    let taken_over = eventually(Duration::from_secs(20), || async {
        let counts = per_account(&fake);
        fake.open_streams() == 10 && accounts.iter().all(|a| counts.get(a) == Some(&1))
    })
    .await;
    assert!(
        taken_over,
        "the survivor watches all ten: {:?}",
        per_account(&fake)
    );
    assert!(killed_at.elapsed() < Duration::from_secs(15));
    for (n, account) in accounts.iter().enumerate() {
        let mut post = new_post(2000 + n as u64, &[&format!("p{n}")]);
        post.author = Some(account.clone());
        fake.publish_post(post);
    }
    let drafted = eventually(Duration::from_secs(30), || async {
        let mut total = 0;
        for id in &ids {
            total += app.drafts(*id).await.len();
        }
        total == 10
    })
    .await;
    let _ = second.kill();
    let _ = second.wait();
    let _ = std::fs::remove_dir_all(dir);
    assert!(drafted);
    for n in 0..10 {
        assert_eq!(model.calls(&format!("p{n}")), 1, "p{n} drafted once");
    }
}

/// A home stream carries other people's posts, and events can come out of order: only the
/// person's own posts are drafted, each of them whatever order they came in, and someone else's
/// post with a higher id does not hide a later own post.
async fn only_own_posts_and_in_any_order(b: Backend) {
    let w = watched(b, Flavor::Mastodon, false, Options::default()).await;
    let mut foreign = new_post(5000, &["foreign5000"]);
    foreign.author = Some("999".into());
    w.fake.publish_post(foreign);
    w.fake.publish_post(new_post(4000, &["own4000"]).with_media(
        "d4000",
        "image",
        Some("Described by hand"),
    ));
    // A status without its author (not how Mastodon sends them) is nobody's own.
    let api = w.fake.url.clone();
    w.fake.send_raw(
        format!(
            "event: update\ndata: {{\"id\":\"4500\",\"content\":\"<p>x</p>\",\"media_attachments\":\
             [{{\"id\":\"anon4500\",\"type\":\"image\",\"url\":\"{api}/media/anon4500.png\",\
             \"description\":null}}]}}\n\n"
        )
        .into_bytes(),
    );
    w.fake.publish_post(new_post(3999, &["own3999"]));
    w.drafted(&["own4000", "own3999"], Duration::from_secs(30))
        .await;
    // A catch-up after a gap does not bring the other person's post either.
    w.fake.drop_streams();
    w.fake.add_post_quietly(new_post(4001, &["own4001"]));
    w.drafted(&["own4001"], Duration::from_secs(30)).await;
    assert_eq!(w.model.calls("foreign5000"), 0);
    assert_eq!(w.model.calls("anon4500"), 0);
    let jobs = w.app.post_jobs(w.platform_id).await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    // The job keeps only what it needs of the post: its images without a description.
    assert!(jobs
        .iter()
        .all(|j| !j.status_json.contains("Described by hand")));
}

/// A stream that floods (a broken or hostile server) is dropped and opened again, instead of
/// taking a core; posts still get drafted.
async fn a_flooding_stream_is_dropped(b: Backend) {
    let w = watched(b, Flavor::Mastodon, false, Options::default()).await;
    let opens = w.fake.state.lock().unwrap().stream_opens;
    for _ in 0..80 {
        w.fake.send_raw(vec![b'\n'; 64 * 1024]);
    }
    let reopened = eventually(Duration::from_secs(20), || async {
        w.fake.state.lock().unwrap().stream_opens > opens
    })
    .await;
    assert!(reopened, "the flooding stream was dropped and opened again");
    // Many small events (each may cost a read) are a flood too, under the byte budget.
    let opens = w.fake.state.lock().unwrap().stream_opens;
    let deletes: String = (0..2000)
        .map(|i| format!("event: delete\ndata: {}\n\n", 100_000 + i))
        .collect();
    w.fake.send_raw(deletes.into_bytes());
    let reopened = eventually(Duration::from_secs(20), || async {
        w.fake.state.lock().unwrap().stream_opens > opens
    })
    .await;
    assert!(
        reopened,
        "the stream of deletes was dropped and opened again"
    );
    w.fake.publish_post(new_post(6000, &["a6000"]));
    w.drafted(&["a6000"], Duration::from_secs(30)).await;
}

/// What the person decides while a post is being drafted wins: publish without review turned
/// off meanwhile keeps the draft for review; a post deleted meanwhile gets no draft; images an
/// edit adds meanwhile are drafted too.
async fn changes_while_a_post_is_drafted_win(b: Backend) {
    let w = watched(b, Flavor::Mastodon, true, Options::default()).await;
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    w.model.set(|m| m.hold = Some(hold.clone()));
    let model = &w.model;
    let busy = || async {
        eventually(Duration::from_secs(20), || async {
            model.state.lock().unwrap().in_flight >= 1
        })
        .await
    };

    w.fake.publish_post(new_post(7000, &["a7000"]));
    assert!(busy().await);
    w.app.set_watch(w.platform_id, true, false).await;
    hold.add_permits(1);
    let d = w.drafted(&["a7000"], Duration::from_secs(20)).await;
    assert_eq!(d[0].state, "pending", "kept for review: {d:?}");
    assert!(!d[0].auto_published);

    w.fake.publish_post(new_post(7001, &["a7001"]));
    assert!(busy().await);
    w.fake.delete_post(7001);
    let dropped = eventually(Duration::from_secs(20), || async {
        w.app
            .post_jobs(w.platform_id)
            .await
            .iter()
            .any(|j| j.status_id == "7001" && j.state == "done")
    })
    .await;
    assert!(dropped);
    hold.add_permits(1);

    w.fake.publish_post(new_post(7002, &["a7002"]));
    assert!(busy().await);
    let mut edited = new_post(7002, &["a7002", "b7002"]);
    edited.content = "<p>one more picture</p>".into();
    w.fake.publish_post_as_edit(edited);
    hold.add_permits(100);
    w.drafted(&["a7002", "b7002"], Duration::from_secs(30))
        .await;
    let settled = eventually(Duration::from_secs(20), || async {
        w.app
            .post_jobs(w.platform_id)
            .await
            .iter()
            .all(|j| j.lease_owner.is_none() && j.state == "done")
    })
    .await;
    assert!(settled, "{:?}", w.app.post_jobs(w.platform_id).await);
    assert!(
        !w.app
            .drafts(w.platform_id)
            .await
            .iter()
            .any(|d| d.status_id == "7001"),
        "the deleted post has no draft"
    );
    assert_eq!(
        w.fake.state.lock().unwrap().edits,
        0,
        "nothing was published"
    );
}

/// A watch that cannot be used (its token cannot be opened) says why and waits before it is
/// tried again, instead of being taken up in a loop.
async fn an_unusable_watch_is_not_retried_in_a_loop(b: Backend) {
    let w = watched(b, Flavor::Mastodon, false, Options::default()).await;
    {
        use diesel::{ExpressionMethods, QueryDsl};
        use diesel_async::RunQueryDsl;
        use fedialt::store::schema::platform_connections as pc;
        let mut conn = w.app.state.db.conn().await.unwrap();
        fedialt::run!(&mut conn, |c| diesel::update(pc::table.find(w.platform_id))
            .set(pc::access_token_enc.eq("not-a-sealed-token"))
            .execute(c)
            .await)
        .unwrap();
    }
    // The watcher starts again (another worker, say) and finds the token unreadable.
    {
        use diesel::{ExpressionMethods, QueryDsl};
        use diesel_async::RunQueryDsl;
        use fedialt::store::schema::watches as wt;
        let mut conn = w.app.state.db.conn().await.unwrap();
        fedialt::run!(&mut conn, |c| diesel::update(wt::table.find(w.platform_id))
            .set((
                wt::lease_owner.eq(None::<String>),
                wt::lease_until_ms.eq(None::<i64>)
            ))
            .execute(c)
            .await)
        .unwrap();
    }
    let noted = eventually(Duration::from_secs(20), || async {
        w.app.watch_row(w.platform_id).await.is_some_and(|r| {
            r.problem
                .as_deref()
                .is_some_and(|p| p.contains("could not read"))
                && r.lease_owner.is_none()
        })
    })
    .await;
    assert!(noted, "{:?}", w.app.watch_row(w.platform_id).await);
    // Left free for another worker at once (this one leaves it alone for a while).
    let row = w.app.watch_row(w.platform_id).await.unwrap();
    assert_eq!(row.lease_until_ms, None, "{row:?}");
    let version = row.version;
    let stable = !eventually(Duration::from_secs(3), || async {
        let row = w.app.watch_row(w.platform_id).await.unwrap();
        row.version != version || row.lease_owner.is_some()
    })
    .await;
    assert!(stable, "not taken up again and again");
    let page = w.app.page("/caption_generation").await;
    assert!(page.contains("could not read"), "{page}");
}

/// The navigation's count follows the drafts: up when a watched post is drafted, gone when the
/// account is removed.
async fn the_waiting_count_follows_the_drafts(b: Backend) {
    let w = watched(b, Flavor::Mastodon, false, Options::default()).await;
    w.fake.publish_post(new_post(8000, &["a8000", "b8000"]));
    w.drafted(&["a8000", "b8000"], Duration::from_secs(30))
        .await;
    let page = w.app.page("/account").await;
    assert!(page.contains("2 waiting"), "{page}");
    let csrf = w.app.csrf().await;
    let r = w
        .app
        .post_form(
            &format!("/platforms/{}/delete", w.platform_id),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let page = w.app.page("/account").await;
    assert!(!page.contains("waiting</span>"), "{page}");
}

mod processes {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_post_made_while_the_worker_was_down_is_drafted() {
        super::a_post_made_while_the_worker_was_down_is_drafted().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_workers_share_ten_accounts_and_take_over_a_dead_ones() {
        super::two_workers_share_ten_accounts_and_take_over_a_dead_ones().await
    }
}

both_databases!(
    a_new_post_is_drafted_from_the_stream,
    auto_publish_publishes_and_own_edits_do_not_loop,
    deletes_and_edits_on_the_instance,
    a_dropped_stream_resumes_and_misses_nothing,
    pixelfed_is_polled,
    a_refused_token_stops_watching_until_reconnected,
    rate_limits_are_waited_out,
    watching_works_with_redis_unreachable,
    watching_goes_on_when_redis_dies,
    the_watch_form_checks_what_it_is_sent,
    only_own_posts_and_in_any_order,
    a_flooding_stream_is_dropped,
    changes_while_a_post_is_drafted_win,
    an_unusable_watch_is_not_retried_in_a_loop,
    the_waiting_count_follows_the_drafts,
);
