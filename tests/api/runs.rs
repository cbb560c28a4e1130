//! Caption runs end to end, against a fake Mastodon or Pixelfed instance and a fake Ollama: paging,
//! what counts as a candidate, rate limits, a revoked token, model failures, cancel, one active run
//! per connection, workers sharing the queue (and one killed mid-run), fairness, and Redis away.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::both_databases;
use crate::fakes::instance::{FakeInstance, FakePost, Flavor};
use crate::fakes::model::FakeModel;
use crate::helpers::*;
use crate::services::KillOnDrop;

const FINISHED: [&str; 3] = ["completed", "failed", "cancelled"];

struct Setup {
    app: TestApp,
    fake: FakeInstance,
    model: FakeModel,
    platform_id: i64,
}

/// `options`, pointed at the fake model unless they say otherwise.
pub(crate) fn options_with(model: &FakeModel, mut options: Options) -> Options {
    let mut env = model.env();
    env.append(&mut options.env);
    options.env = env;
    options
}

/// An app pointed at a fake model, a signed-in person with a connection on a fake instance of
/// `flavor` holding `posts`, and settings of `max_posts` per run and no pause between posts.
async fn setup_with(
    backend: Backend,
    flavor: Flavor,
    posts: Vec<FakePost>,
    max_posts: u32,
    options: Options,
) -> Setup {
    let model = FakeModel::start().await;
    let app = spawn_app_with(backend, options_with(&model, options)).await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    let (fake, platform_id) = app.connect_flavor_with(&app.client, "alice", flavor).await;
    fake.set(|s| s.posts = posts);
    app.set_run_settings(&app.client, max_posts, "0", false)
        .await;
    Setup {
        app,
        fake,
        model,
        platform_id,
    }
}

async fn setup(backend: Backend, posts: Vec<FakePost>, max_posts: u32) -> Setup {
    setup_with(
        backend,
        Flavor::Mastodon,
        posts,
        max_posts,
        Options::default(),
    )
    .await
}

impl TestApp {
    pub async fn set_run_settings(
        &self,
        client: &reqwest::Client,
        max_posts: u32,
        delay: &str,
        reprocess: bool,
    ) {
        let max = max_posts.to_string();
        let mut fields = vec![
            ("max_posts_per_run", max.as_str()),
            ("max_caption_length", "500"),
            ("optimal_min_length", "80"),
            ("optimal_max_length", "200"),
            ("processing_delay", delay),
        ];
        if reprocess {
            fields.push(("reprocess_existing", "on"));
        }
        let r = self
            .save_settings_with(client, "/caption_settings", &fields)
            .await;
        assert_eq!(r.status().as_u16(), 303, "the settings are saved");
    }

    pub async fn start_run_with(&self, client: &reqwest::Client) -> reqwest::Response {
        let csrf = self.csrf_with(client).await;
        let r = self
            .post_form_with(
                client,
                "/caption_generation/start",
                &[("csrf_token", &csrf)],
            )
            .await;
        assert_eq!(r.status().as_u16(), 303);
        assert_eq!(location(&r), "/caption_generation");
        r
    }

    pub async fn run_status_with(&self, client: &reqwest::Client) -> Value {
        let r = self.get_with(client, "/caption_generation/status").await;
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }

    /// Polls the status JSON until the run has ended (or `limit` passes: a failed test).
    pub async fn finished_run_with(&self, client: &reqwest::Client, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let status = self.run_status_with(client).await;
            if FINISHED.contains(&status["state"].as_str().unwrap()) {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "the run did not end within {limit:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    pub async fn drafts(&self, platform_id: i64) -> Vec<fedialt::store::drafts::DraftRow> {
        use diesel::{ExpressionMethods, QueryDsl, SelectableHelper};
        use diesel_async::RunQueryDsl;
        use fedialt::store::schema::caption_drafts as cd;
        let mut conn = self.state.db.conn().await.unwrap();
        fedialt::run!(&mut conn, |c| cd::table
            .filter(cd::platform_id.eq(platform_id))
            .order(cd::id.asc())
            .select(fedialt::store::drafts::DraftRow::as_select())
            .load(c)
            .await)
        .unwrap()
    }

    pub async fn run_rows(&self) -> Vec<fedialt::store::runs::RunRow> {
        use diesel::{ExpressionMethods, QueryDsl, SelectableHelper};
        use diesel_async::RunQueryDsl;
        use fedialt::store::schema::caption_jobs as cj;
        let mut conn = self.state.db.conn().await.unwrap();
        fedialt::run!(&mut conn, |c| cj::table
            .order(cj::id.asc())
            .select(fedialt::store::runs::RunRow::as_select())
            .load(c)
            .await)
        .unwrap()
    }
}

fn media_ids(drafts: &[fedialt::store::drafts::DraftRow]) -> Vec<String> {
    let mut ids: Vec<String> = drafts.iter().map(|d| d.media_id.clone()).collect();
    ids.sort();
    ids
}

/// Newest first: one image each, ids `m{id}`.
fn simple_posts(ids: std::ops::RangeInclusive<u64>) -> Vec<FakePost> {
    ids.rev()
        .map(|id| FakePost::images(id, &[&format!("m{id}")]))
        .collect()
}

async fn a_run_reads_every_page_and_drafts_each_undescribed_image(b: Backend) {
    let mut reblog = FakePost::images(98, &["m98"]);
    reblog.reblog = true;
    let mut reply = FakePost::images(97, &["m97"]);
    reply.reply = true;
    let posts = vec![
        FakePost::images(100, &["m100a"]).with_media("m100b", "image", Some("A cat asleep")),
        FakePost::images(99, &[])
            .with_media("v99", "video", None)
            .with_media("m99", "image", Some("   ")),
        reblog,
        reply,
        FakePost::images(96, &[]).with_media("m96", "image", Some("Described already")),
        FakePost::images(95, &[])
            .with_media("g95", "gifv", None)
            .with_media("a95", "audio", None),
        FakePost::images(94, &[]).with_media("u94", "unknown", None),
        FakePost::images(93, &["m93"]),
    ];
    let s = setup(b, posts, 50).await;
    // Several pages, and an instance that sends reblogs although asked not to.
    s.fake.set(|f| {
        f.page_size = 3;
        f.ignore_exclude_reblogs = true;
    });
    let before = s.app.run_status_with(&s.app.client).await;
    assert_eq!(before["state"], "none");
    assert!(s
        .app
        .page("/caption_generation")
        .await
        .contains("No run yet for this account"));

    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["posts_scanned"], 4, "{status}");
    assert_eq!(status["posts_limit"], 50);
    assert_eq!(status["images_found"], 4);
    assert_eq!(status["drafts_made"], 4);
    assert_eq!(status["images_failed"], 0);
    assert_eq!(
        status["media_skipped"], 4,
        "video, gifv, audio, unknown: {status}"
    );
    assert!(status["error"].is_null());
    let run_id = status["run_id"].as_i64().unwrap();

    let drafts = s.app.drafts(s.platform_id).await;
    assert_eq!(media_ids(&drafts), ["m100a", "m93", "m97", "m99"]);
    let first = drafts.iter().find(|d| d.media_id == "m100a").unwrap();
    assert_eq!(first.state, "pending");
    assert_eq!(first.status_id, "100");
    assert_eq!(first.status_url, format!("{}/@alice/100", s.fake.url));
    assert_eq!(
        first.preview_url,
        format!("{}/media/m100a_small.png", s.fake.url)
    );
    assert_eq!(first.post_text, "Post 100 & friends");
    assert_eq!(first.language.as_deref(), Some("en"));
    assert_eq!(first.model, "llava:13b");
    assert_eq!(first.run_id, Some(run_id));
    assert!(first.alt_text.contains("m100a"), "{}", first.alt_text);

    // The model was asked once per image, in Ollama's format.
    for media in ["m100a", "m99", "m97", "m93"] {
        assert_eq!(s.model.calls(media), 1, "{media}");
    }
    assert_eq!(s.model.total_calls(), 4);
    let request = s.model.state.lock().unwrap().requests[0].clone();
    assert_eq!(request["model"], "llava:13b");
    assert_eq!(request["stream"], false);
    let image = request["messages"][0]["images"][0].as_str().unwrap();
    assert!(!image.starts_with("data:"), "bare base64");
    let prompt = request["messages"][0]["content"].as_str().unwrap();
    assert!(prompt.contains("80 to 200"), "{prompt}");

    // Paging: the first request asks for media posts without reblogs; the rest follow the Link.
    let queries = s.fake.state.lock().unwrap().statuses_queries.clone();
    assert!(queries.len() >= 3, "{queries:?}");
    for part in ["only_media=true", "exclude_reblogs=true", "limit=40"] {
        assert!(queries[0].contains(part), "{queries:?}");
    }
    assert!(!queries[0].contains("max_id"));
    assert!(queries[1].contains("max_id=98"), "{queries:?}");

    // The page shows the finished run and links to its drafts, which /runs/{id} lists.
    let page = s.app.page("/caption_generation").await;
    assert!(
        page.contains("<progress id=\"run-bar\" max=\"50\" value=\"4\">"),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"/runs/{run_id}\"")));
    let run_page = s.app.page(&format!("/runs/{run_id}")).await;
    for d in &drafts {
        assert!(run_page.contains(&format!("id=\"draft-{}\"", d.id)));
    }
    assert!(s.app.page("/runs").await.contains(&format!("Run {run_id}")));

    // The status comes from Redis once warm: no SQL.
    s.app.run_status_with(&s.app.client).await;
    let statements = s.app.statements();
    let again = s.app.run_status_with(&s.app.client).await;
    assert_eq!(again, status);
    assert_eq!(
        s.app.statements(),
        statements,
        "a warm status read runs no SQL"
    );
}

async fn pixelfed_without_a_link_header_pages_by_max_id(b: Backend) {
    let s = setup_with(
        b,
        Flavor::Pixelfed,
        simple_posts(1..=5),
        50,
        Options::default(),
    )
    .await;
    s.fake.set(|f| f.page_size = 2);
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["drafts_made"], 5);
    let queries = s.fake.state.lock().unwrap().statuses_queries.clone();
    assert!(queries[1].contains("max_id=4"), "{queries:?}");
    assert!(queries[2].contains("max_id=2"), "{queries:?}");
    assert_eq!(
        media_ids(&s.app.drafts(s.platform_id).await),
        ["m1", "m2", "m3", "m4", "m5"]
    );
}

async fn the_limit_counts_posts_with_work_and_the_next_run_goes_further(b: Backend) {
    let mut posts = vec![FakePost::images(10, &[]).with_media("m10", "image", Some("Done"))];
    posts.extend(simple_posts(7..=9));
    let s = setup(b, posts, 2).await;
    s.app.start_run_with(&s.app.client).await;
    let first = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(first["state"], "completed");
    assert_eq!(first["posts_scanned"], 2);
    assert_eq!(media_ids(&s.app.drafts(s.platform_id).await), ["m8", "m9"]);

    s.app.start_run_with(&s.app.client).await;
    let second = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_ne!(second["run_id"], first["run_id"]);
    assert_eq!(second["posts_scanned"], 1, "{second}");
    assert_eq!(
        media_ids(&s.app.drafts(s.platform_id).await),
        ["m7", "m8", "m9"]
    );
    assert_eq!(s.model.calls("m9"), 1, "an image is never drafted twice");
    assert_eq!(s.model.total_calls(), 3);
}

async fn a_revoked_token_ends_the_run_and_marks_the_connection(b: Backend) {
    let s = setup(b, simple_posts(1..=2), 50).await;
    s.fake.set(|f| f.accounts.clear());
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["state"], "failed");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("this connection needs a new token"),
        "{status}"
    );
    assert!(s.app.page("/platforms").await.contains("Needs a new token"));
    // A new start is refused with the reason, and nothing is queued.
    s.app.start_run_with(&s.app.client).await;
    let page = s.app.page("/caption_generation").await;
    assert!(
        page.contains("needs a new token before a run can start"),
        "{page}"
    );
    assert_eq!(s.app.run_rows().await.len(), 1);
    assert_eq!(s.model.total_calls(), 0);
}

async fn rate_limits_are_waited_out(b: Backend) {
    let s = setup(b, simple_posts(1..=2), 50).await;
    // The first page is refused once with Retry-After: 1; then every answer says the allowance is
    // spent until a second from now.
    s.fake.set(|f| {
        f.page_size = 1;
        f.rate_limit = Some((1, 1));
        f.exhaust_rate_limit = Some(1);
    });
    let started = Instant::now();
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(30))
        .await;
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["drafts_made"], 2);
    let times: Vec<Instant> = s
        .fake
        .state
        .lock()
        .unwrap()
        .request_times
        .iter()
        .filter(|(what, _)| what == "statuses")
        .map(|(_, at)| *at)
        .collect();
    assert!(times.len() >= 3, "refused, then two pages at least");
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(900),
            "each request waited for the instance's allowance"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
}

async fn processing_delay_is_waited_between_posts(b: Backend) {
    let s = setup(b, simple_posts(1..=3), 50).await;
    s.app
        .set_run_settings(&s.app.client, 50, "0.5", false)
        .await;
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["drafts_made"], 3);
    let times = s.model.state.lock().unwrap().times.clone();
    assert_eq!(times.len(), 3);
    for pair in times.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(gap >= Duration::from_millis(500), "{gap:?}");
    }
}

async fn model_failures_mark_images_and_the_run_goes_on(b: Backend) {
    // One call at a time, so "the first call" is m3's.
    let one_at_a_time = Options::default().with("CAPTION_CONCURRENCY", "1");
    let s = setup_with(b, Flavor::Mastodon, simple_posts(1..=3), 50, one_at_a_time).await;
    // m2 always fails with a 5xx (tried three times); the very first call fails once and succeeds
    // when tried again.
    s.model.set(|m| {
        m.fail_media = vec!["m2".into()];
        m.fail_first = 1;
    });
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(30))
        .await;
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["images_found"], 3);
    assert_eq!(status["drafts_made"], 2);
    assert_eq!(status["images_failed"], 1);
    assert_eq!(s.model.calls("m3"), 2, "a passing failure is tried again");
    assert_eq!(s.model.calls("m2"), 3, "then given up");
    let drafts = s.app.drafts(s.platform_id).await;
    let failed = drafts.iter().find(|d| d.media_id == "m2").unwrap();
    assert_eq!(failed.state, "generation_failed");
    assert!(
        failed.error.as_deref().unwrap().contains("HTTP 500"),
        "{:?}",
        failed.error
    );

    // A 4xx is the model server refusing: not tried again, the reason kept.
    let second = setup(b, simple_posts(1..=2), 50).await;
    second.model.set(|m| {
        m.fail_with = Some((
            404,
            "model \"llava:13b\" not found, try pulling it first".into(),
        ))
    });
    second.app.start_run_with(&second.app.client).await;
    let status = second
        .app
        .finished_run_with(&second.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["images_failed"], 2);
    assert_eq!(second.model.total_calls(), 2);
    let drafts = second.app.drafts(second.platform_id).await;
    assert!(drafts[0].error.as_deref().unwrap().contains("not found"));
}

async fn cancel_drops_a_held_model_call_within_two_seconds(b: Backend) {
    let one_at_a_time = Options::default().with("CAPTION_CONCURRENCY", "1");
    let s = setup_with(b, Flavor::Mastodon, simple_posts(1..=3), 50, one_at_a_time).await;
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    s.model.set(|m| m.hold = Some(hold.clone()));
    s.app.start_run_with(&s.app.client).await;
    // The first image goes through; the second is held.
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.model.state.lock().unwrap().calls.len() == 2
        })
        .await
    );
    let status = s.app.run_status_with(&s.app.client).await;
    assert_eq!(status["state"], "running");
    let csrf = s.app.csrf().await;
    let cancelled_at = Instant::now();
    let r = s
        .app
        .post_form("/caption_generation/cancel", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(r.status().as_u16(), 303);
    // The progress bar's poll does not eat the message the cancel left for the page.
    assert_eq!(
        s.app.run_status_with(&s.app.client).await["state"],
        "cancelled"
    );
    let page = s.app.page("/caption_generation").await;
    assert!(page.contains("The run was cancelled. The draft it made is kept."));
    assert!(
        page.contains("<strong id=\"run-state\">Cancelled</strong>"),
        "{page}"
    );
    let status = s.app.run_status_with(&s.app.client).await;
    assert_eq!(status["state"], "cancelled");
    assert_eq!(status["drafts_made"], 1, "the draft made so far stays");
    // The worker drops the held request and lets the run go.
    let run_id = status["run_id"].as_i64().unwrap();
    assert!(
        s.app.state.runs.stops.holds(run_id) || cancelled_at.elapsed() < Duration::from_secs(2)
    );
    assert!(
        eventually(Duration::from_secs(2), || async {
            !s.app.state.runs.stops.holds(run_id)
        })
        .await,
        "the model call was dropped within 2 s of the cancel"
    );
    assert!(cancelled_at.elapsed() < Duration::from_secs(3));
    hold.add_permits(10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(media_ids(&s.app.drafts(s.platform_id).await), ["m3"]);
    assert_eq!(
        s.app.run_status_with(&s.app.client).await["state"],
        "cancelled"
    );
}

async fn a_second_start_says_a_run_is_going(b: Backend) {
    let s = setup(b, simple_posts(1..=2), 50).await;
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    s.model.set(|m| m.hold = Some(hold.clone()));
    s.app.start_run_with(&s.app.client).await;
    s.app.start_run_with(&s.app.client).await;
    let page = s.app.page("/caption_generation").await;
    assert!(page.contains("is already going"), "{page}");
    assert_eq!(s.app.run_rows().await.len(), 1);
    hold.add_permits(10);
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["state"], "completed");
}

async fn two_workers_never_take_the_same_run(b: Backend) {
    let app = spawn_app_with(b, Options::default().with("FEDIALT_WORKER", "false")).await;
    // 24 people with a connection each (one person's runs are carried out two at a time).
    for i in 0..24 {
        let user = app.create_user(&format!("owner{i}"), "user").await;
        queue_run_without_instance(&app, user.id, &format!("acct{i}")).await;
    }
    let claim_all = |owner: &'static str| {
        let runs = app.state.runs.clone();
        async move {
            let mut mine = Vec::new();
            while let Some(row) = runs.claim(owner, Duration::from_secs(60)).await.unwrap() {
                assert_eq!(row.lease_owner.as_deref(), Some(owner));
                mine.push(row.id);
            }
            mine
        }
    };
    let (a, b2) = tokio::join!(
        tokio::spawn(claim_all("worker-a")),
        tokio::spawn(claim_all("worker-b"))
    );
    let (a, b2) = (a.unwrap(), b2.unwrap());
    let mut all: Vec<i64> = a.iter().chain(&b2).copied().collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "no run was taken twice: {a:?} {b2:?}");
    assert_eq!(all.len(), 24);
    assert!(app
        .state
        .runs
        .claim("worker-c", Duration::from_secs(60))
        .await
        .unwrap()
        .is_none());
}

async fn a_small_run_queued_behind_a_large_one_finishes_first(b: Backend) {
    let model = FakeModel::start().await;
    model.set(|m| m.delay = Duration::from_millis(60));
    let app = spawn_app_with(
        b,
        options_with(&model, Options::default().with("CAPTION_CONCURRENCY", "1")),
    )
    .await;
    let big = app.create_user("bigposter", "user").await;
    app.login(&big).await;
    let (big_fake, _) = app
        .connect_flavor_with(&app.client, "bigposter", Flavor::Mastodon)
        .await;
    big_fake.set(|f| f.posts = simple_posts(1..=40));
    app.set_run_settings(&app.client, 40, "0", false).await;

    let small_client = new_client();
    let small = app.create_user("smallposter", "user").await;
    let r = app
        .login_with(&small_client, &small.username, PASSWORD)
        .await;
    assert_eq!(r.status().as_u16(), 303);
    let (small_fake, _) = app
        .connect_flavor_with(&small_client, "smallposter", Flavor::Mastodon)
        .await;
    small_fake.set(|f| f.posts = simple_posts(101..=102));
    app.set_run_settings(&small_client, 40, "0", false).await;

    app.start_run_with(&app.client).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            model.total_calls() >= 3
        })
        .await,
        "the big run is under way"
    );
    app.start_run_with(&small_client).await;
    let small_status = app
        .finished_run_with(&small_client, Duration::from_secs(20))
        .await;
    assert_eq!(small_status["state"], "completed");
    assert_eq!(small_status["drafts_made"], 2);
    let big_status = app.run_status_with(&app.client).await;
    assert_eq!(
        big_status["state"], "running",
        "the big run is still going: {big_status}"
    );
    assert!(
        model.state.lock().unwrap().max_in_flight <= 1,
        "CAPTION_CONCURRENCY holds"
    );
    let done = app
        .finished_run_with(&app.client, Duration::from_secs(30))
        .await;
    assert_eq!(done["drafts_made"], 40);
}

async fn a_whole_run_with_redis_unreachable(b: Backend) {
    let hole = BlackHole::start().await;
    let s = setup_with(
        b,
        Flavor::Mastodon,
        simple_posts(1..=3),
        50,
        Options::redis(hole.url()),
    )
    .await;
    let started = Instant::now();
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["state"], "completed");
    assert_eq!(status["drafts_made"], 3);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "no stall on a dead Redis"
    );
}

async fn a_run_survives_redis_killed_mid_run(b: Backend) {
    let mut redis = RedisServer::start().await;
    let s = setup_with(
        b,
        Flavor::Mastodon,
        simple_posts(1..=4),
        50,
        Options::redis(redis.url()).with("CAPTION_CONCURRENCY", "1"),
    )
    .await;
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
    s.model.set(|m| m.hold = Some(hold.clone()));
    s.app.start_run_with(&s.app.client).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.model.state.lock().unwrap().calls.len() == 3
        })
        .await
    );
    redis.kill();
    hold.add_permits(10);
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["drafts_made"], 4);
    // Back with Redis (empty): the status is the database's, never an older one.
    redis.restart().await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.app.redis_status() == fedialt::cache::RedisStatus::Ok
        })
        .await
    );
    assert_eq!(s.app.run_status_with(&s.app.client).await, status);
    assert_eq!(s.app.drafts(s.platform_id).await.len(), 4);
}

both_databases!(
    a_run_reads_every_page_and_drafts_each_undescribed_image,
    pixelfed_without_a_link_header_pages_by_max_id,
    the_limit_counts_posts_with_work_and_the_next_run_goes_further,
    a_revoked_token_ends_the_run_and_marks_the_connection,
    cancel_drops_a_held_model_call_within_two_seconds,
    two_workers_never_take_the_same_run,
    a_run_survives_redis_killed_mid_run,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_sqlite() {
    rate_limits_are_waited_out(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_delay_is_waited_between_posts_sqlite() {
    processing_delay_is_waited_between_posts(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_failures_mark_images_and_the_run_goes_on_sqlite() {
    model_failures_mark_images_and_the_run_goes_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_says_a_run_is_going_postgres() {
    a_second_start_says_a_run_is_going(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_queued_behind_a_large_one_finishes_first_sqlite() {
    a_small_run_queued_behind_a_large_one_finishes_first(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_run_with_redis_unreachable_sqlite() {
    a_whole_run_with_redis_unreachable(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_and_other_people_get_nothing() {
    let s = setup(Backend::Sqlite, simple_posts(1..=1), 50).await;
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    let run_id = status["run_id"].as_i64().unwrap();
    let visitor = new_client();
    let r = s.app.get_with(&visitor, "/caption_generation/status").await;
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = visitor
        .post(s.app.url("/caption_generation/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(location(&r).starts_with("/login"));

    let other = new_client();
    let bob = s.app.create_user("bob", "user").await;
    assert_eq!(
        s.app
            .login_with(&other, &bob.username, PASSWORD)
            .await
            .status()
            .as_u16(),
        303
    );
    let r = s.app.get_with(&other, &format!("/runs/{run_id}")).await;
    assert_eq!(r.status().as_u16(), 404);
    let runs = s.app.page_with(&other, "/runs").await;
    assert!(runs.contains("You have not started a run yet"), "{runs}");
    assert!(runs.contains("connect your Mastodon or Pixelfed account"));
    assert_eq!(s.app.run_status_with(&other).await["state"], "none");
    // A start without the form's token changes nothing.
    let r = s
        .app
        .post_form("/caption_generation/start", &[("csrf_token", "forged")])
        .await;
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(s.app.run_rows().await.len(), 1);
}

/// A `fedialt worker` process killed (SIGKILL) during a model call: its lease runs out, another
/// worker takes the run up from its last finished post, and no image gets a second draft.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_is_finished_by_another() {
    let model = FakeModel::start().await;
    let app = spawn_app_with(
        Backend::Postgres,
        options_with(
            &model,
            Options::default()
                .with("FEDIALT_WORKER", "false")
                .with("FEDIALT_JOB_LEASE_SECS", "2")
                .with("CAPTION_CONCURRENCY", "1"),
        ),
    )
    .await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    let (fake, platform_id) = app
        .connect_flavor_with(&app.client, "alice", Flavor::Mastodon)
        .await;
    fake.set(|f| f.posts = simple_posts(1..=6));
    app.set_run_settings(&app.client, 50, "0", false).await;
    // Two model calls go through, the third is held when the worker dies.
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
    model.set(|m| m.hold = Some(hold.clone()));
    app.start_run_with(&app.client).await;

    let dir = tempdir_for_worker();
    let mut env = worker_env(&app, &model, &dir);
    env.push(("FEDIALT_JOB_LEASE_SECS".to_owned(), "2".to_owned()));
    env.push(("CAPTION_CONCURRENCY".to_owned(), "1".to_owned()));
    let mut worker = fedialt_process("worker", env);
    let third_held = eventually(Duration::from_secs(30), || async {
        model.state.lock().unwrap().calls.len() == 3
    })
    .await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert!(third_held, "the worker process took the run");
    hold.add_permits(100);
    assert_eq!(app.drafts(platform_id).await.len(), 2);

    // This app's worker takes the run up once the dead worker's lease has run out.
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.state.worker.drain().await;
            app.run_status_with(&app.client).await["state"] == "completed"
        })
        .await
    );
    let drafts = app.drafts(platform_id).await;
    assert_eq!(media_ids(&drafts), ["m1", "m2", "m3", "m4", "m5", "m6"]);
    let calls = model.state.lock().unwrap().calls.clone();
    for (media, n) in &calls {
        assert!(*n <= 2, "{media} was asked for {n} times");
    }
    assert!(
        calls.values().sum::<usize>() <= 7,
        "at most one repeat: {calls:?}"
    );
    let status = app.run_status_with(&app.client).await;
    assert_eq!(status["drafts_made"], 6, "{status}");
    assert_eq!(status["posts_scanned"], 6);
    let _ = std::fs::remove_dir_all(dir);
}

/// A connection row (no instance behind it) and a run queued for it: for tests of claiming.
async fn queue_run_without_instance(app: &TestApp, user_id: i64, account: &str) {
    let now = fedialt::store::now();
    let mut conn = app.state.db.conn().await.unwrap();
    let id = fedialt::store::platforms::insert(
        &mut conn,
        &fedialt::store::platforms::NewPlatform {
            user_id,
            name: account,
            instance_url: "https://example.org",
            platform_type: "mastodon",
            account_id: account,
            account_username: account,
            display_name: account,
            access_token_enc: "sealed",
            refresh_token_enc: None,
            description_limit: 1500,
            is_default: false,
            needs_reauth: false,
            created_at: now,
            updated_at: now,
            token_seal: 2,
        },
    )
    .await
    .unwrap();
    drop(conn);
    app.state
        .runs
        .start(
            fedialt::domain::UserId(user_id),
            fedialt::domain::PlatformId(id),
            &fedialt::domain::CaptionSettings::defaults(),
        )
        .await
        .unwrap();
}

/// The real binary (`fedialt worker` or `serve`) with exactly this environment, quiet.
pub(crate) fn fedialt_process(command: &str, env: Vec<(String, String)>) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_fedialt"))
        .arg(command)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

pub(crate) fn tempdir_for_worker() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fedialt-worker-{}", random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// SIGTERM to a serving process in the middle of a run: its worker hands the run back to the queue
/// at once (not after its lease), and another worker finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_puts_its_run_back_in_the_queue() {
    let model = FakeModel::start().await;
    let app = spawn_app_with(
        Backend::Postgres,
        options_with(&model, Options::default().with("FEDIALT_WORKER", "false")),
    )
    .await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    let (fake, platform_id) = app
        .connect_flavor_with(&app.client, "alice", Flavor::Mastodon)
        .await;
    fake.set(|f| f.posts = simple_posts(1..=3));
    app.set_run_settings(&app.client, 50, "0", false).await;
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    model.set(|m| m.hold = Some(hold.clone()));
    app.start_run_with(&app.client).await;

    let dir = tempdir_for_worker();
    let mut env = worker_env(&app, &model, &dir);
    env.push((
        "FEDIALT_BIND".to_owned(),
        format!("127.0.0.1:{}", free_port()),
    ));
    env.push(("CAPTION_CONCURRENCY".to_owned(), "1".to_owned()));
    let server = fedialt_process("serve", env);
    let held = eventually(Duration::from_secs(30), || async {
        model.total_calls() == 1
    })
    .await;
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let stopped = tokio::task::spawn_blocking(move || server.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(held, "the serving process took the run");
    assert!(stopped.status.success());
    let row = app.run_rows().await.pop().unwrap();
    assert_eq!(row.state, "queued", "handed back, not left to its lease");
    assert!(row.lease_owner.is_none());

    hold.add_permits(100);
    assert!(app.state.worker.drain().await >= 1);
    let status = app.run_status_with(&app.client).await;
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(
        media_ids(&app.drafts(platform_id).await),
        ["m1", "m2", "m3"]
    );
    let _ = std::fs::remove_dir_all(dir);
}

pub(crate) fn worker_env(
    app: &TestApp,
    model: &FakeModel,
    dir: &std::path::Path,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = model.env();
    env.extend([
        ("DATABASE_URL".to_owned(), app.db.url.clone()),
        ("FEDIALT_SECRET_KEY".to_owned(), app.secret_key.clone()),
        ("REDIS_URL".to_owned(), SHARED_REDIS.to_owned()),
        ("FEDIALT_REDIS_PREFIX".to_owned(), app.prefix.clone()),
        (
            "FEDIALT_ALLOW_PRIVATE_NETWORK".to_owned(),
            "true".to_owned(),
        ),
        ("FEDIALT_DATA_DIR".to_owned(), dir.display().to_string()),
    ]);
    env
}

/// An idle `fedialt worker` that would poll only once a minute starts a run queued by the web
/// process at once: PostgreSQL's NOTIFY wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_wakes_a_worker_in_another_process_at_once() {
    let model = FakeModel::start().await;
    let app = spawn_app_with(
        Backend::Postgres,
        options_with(&model, Options::default().with("FEDIALT_WORKER", "false")),
    )
    .await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    let (fake, _) = app
        .connect_flavor_with(&app.client, "alice", Flavor::Mastodon)
        .await;
    fake.set(|f| f.posts = simple_posts(1..=2));
    app.set_run_settings(&app.client, 50, "0", false).await;
    let dir = tempdir_for_worker();
    let mut worker = KillOnDrop(fedialt_process("worker", {
        let mut env = worker_env(&app, &model, &dir);
        env.push(("FEDIALT_JOB_POLL_SECS".to_owned(), "60".to_owned()));
        env
    }));
    // Its first look for work happens at its start; give it time to be idle and listening.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    app.start_run_with(&app.client).await;
    let status = app
        .finished_run_with(&app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["state"], "completed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken at once, not at the next poll: {:?}",
        started.elapsed()
    );
    let _ = worker.0.kill();
    let _ = std::fs::remove_dir_all(dir);
}

async fn a_run_stops_after_looking_at_ten_times_its_limit(b: Backend) {
    let posts: Vec<FakePost> = (1..=30)
        .rev()
        .map(|id| {
            FakePost::images(id, &[]).with_media(&format!("m{id}"), "image", Some("Described"))
        })
        .collect();
    let s = setup(b, posts, 2).await;
    s.fake.set(|f| f.page_size = 7);
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["state"], "completed");
    assert_eq!(status["posts_scanned"], 0);
    assert!(
        status["step"]
            .as_str()
            .unwrap()
            .contains("looked at 20 posts"),
        "{status}"
    );
    let queries = s.fake.state.lock().unwrap().statuses_queries.len();
    assert_eq!(
        queries, 3,
        "20 posts at 7 a page: three pages read, not five"
    );
    assert_eq!(s.model.total_calls(), 0);
}

async fn reprocessing_redoes_drafts_but_never_an_edited_one(b: Backend) {
    let s = setup(b, simple_posts(1..=2), 50).await;
    s.app.start_run_with(&s.app.client).await;
    s.app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    {
        use diesel::{ExpressionMethods, QueryDsl};
        use diesel_async::RunQueryDsl;
        use fedialt::store::schema::caption_drafts as cd;
        let mut conn = s.app.state.db.conn().await.unwrap();
        fedialt::run!(&mut conn, |c| diesel::update(
            cd::table.filter(cd::media_id.eq("m1"))
        )
        .set((cd::edited.eq(true), cd::alt_text.eq("My own words")))
        .execute(c)
        .await)
        .unwrap();
    }
    s.app.set_run_settings(&s.app.client, 50, "0", true).await;
    s.model.set(|m| m.answer = "A second look at {id}.".into());
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["drafts_made"], 1, "{status}");
    let drafts = s.app.drafts(s.platform_id).await;
    assert_eq!(drafts.len(), 2, "redone in place, never a second draft");
    let m1 = drafts.iter().find(|d| d.media_id == "m1").unwrap();
    let m2 = drafts.iter().find(|d| d.media_id == "m2").unwrap();
    assert_eq!(m1.alt_text, "My own words");
    assert_eq!(m2.alt_text, "A second look at m2.");
    assert_eq!(m2.run_id, status["run_id"].as_i64());
    assert_eq!(s.model.calls("m1"), 1);
    assert_eq!(s.model.calls("m2"), 2);
}

both_databases!(
    a_run_stops_after_looking_at_ten_times_its_limit,
    reprocessing_redoes_drafts_but_never_an_edited_one,
);

/// Ground earlier runs covered is skipped in one jump: a small limit keeps reaching older posts
/// however many drafted (or failed) posts lie before them.
async fn later_runs_read_past_drafted_posts(b: Backend) {
    let s = setup(b, simple_posts(1..=13), 12).await;
    s.model.set(|m| m.fail_media = vec!["m5".into()]);
    s.app.start_run_with(&s.app.client).await;
    let first = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(first["posts_scanned"], 12);
    assert_eq!(first["images_failed"], 1);
    // Twelve posts drafted (one failed) lie before post 1; a limit of 1 still reaches it.
    s.model.set(|m| m.fail_media.clear());
    s.app.set_run_settings(&s.app.client, 1, "0", false).await;
    s.app.start_run_with(&s.app.client).await;
    let second = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(second["drafts_made"], 1, "{second}");
    assert_eq!(second["media_skipped"], 0);
    let drafts = s.app.drafts(s.platform_id).await;
    assert_eq!(drafts.len(), 13);
    assert_eq!(s.model.calls("m1"), 1);
    assert_eq!(s.model.calls("m6"), 1, "drafted images are not asked again");
    // A new post on top is read, then the run goes on below everything read before.
    s.fake
        .set(|f| f.posts.insert(0, FakePost::images(14, &["m14"])));
    s.app.start_run_with(&s.app.client).await;
    let third = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(third["drafts_made"], 1, "{third}");
    assert_eq!(s.model.calls("m14"), 1);
}

/// Posts with nothing to do at the top of the timeline count towards the ten-times limit once:
/// the next run goes on below them.
async fn successive_runs_get_past_described_posts(b: Backend) {
    let mut posts: Vec<FakePost> = (6..=30)
        .rev()
        .map(|id| FakePost::images(id, &[]).with_media(&format!("m{id}"), "image", Some("Done")))
        .collect();
    posts.extend(simple_posts(1..=5));
    let s = setup(b, posts, 2).await;
    s.fake.set(|f| f.page_size = 7);
    let mut made = Vec::new();
    for _ in 0..4 {
        s.app.start_run_with(&s.app.client).await;
        let status = s
            .app
            .finished_run_with(&s.app.client, Duration::from_secs(20))
            .await;
        assert_eq!(status["state"], "completed", "{status}");
        made.push(status["drafts_made"].as_i64().unwrap());
    }
    assert_eq!(
        made,
        [0, 2, 2, 1],
        "the first run looks at 20 described posts and stops"
    );
    assert_eq!(
        media_ids(&s.app.drafts(s.platform_id).await),
        ["m1", "m2", "m3", "m4", "m5"]
    );
}

/// With nothing listening at CAPTION_BASE_URL the run waits to try again (saying where it looked)
/// rather than marking every image as failed.
async fn an_unreachable_model_puts_the_run_back_without_failing_images(b: Backend) {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let s = setup_with(
        b,
        Flavor::Mastodon,
        simple_posts(1..=3),
        50,
        Options::default().with("CAPTION_BASE_URL", &closed),
    )
    .await;
    s.app.start_run_with(&s.app.client).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            s.app.run_status_with(&s.app.client).await["step"]
                .as_str()
                .unwrap()
                .starts_with("Trying again")
        })
        .await
    );
    let status = s.app.run_status_with(&s.app.client).await;
    assert_eq!(status["state"], "queued", "{status}");
    let step = status["step"].as_str().unwrap();
    assert!(
        step.contains(&closed) && step.contains("CAPTION_BASE_URL"),
        "{step}"
    );
    assert_eq!(status["images_failed"], 0);
    assert!(s.app.drafts(s.platform_id).await.is_empty());
}

both_databases!(
    later_runs_read_past_drafted_posts,
    successive_runs_get_past_described_posts,
    an_unreachable_model_puts_the_run_back_without_failing_images,
);

/// An instance that serves the same page whatever it is asked, or a Link on another host: the run
/// ends, counts each post once, and pages by max_id where the Link is not the instance's.
async fn hostile_paging_ends_and_counts_each_post_once(b: Backend) {
    let s = setup(b, simple_posts(1..=5), 50).await;
    s.fake.set(|f| {
        f.page_size = 2;
        f.ignore_max_id = true;
    });
    for _ in 0..2 {
        s.app.start_run_with(&s.app.client).await;
        let status = s
            .app
            .finished_run_with(&s.app.client, Duration::from_secs(20))
            .await;
        assert_eq!(status["state"], "completed", "{status}");
    }
    assert_eq!(media_ids(&s.app.drafts(s.platform_id).await), ["m4", "m5"]);
    assert_eq!(s.model.total_calls(), 2);
    assert!(s.fake.state.lock().unwrap().statuses_queries.len() <= 6);

    let s = setup(b, simple_posts(1..=6), 50).await;
    s.fake.set(|f| {
        f.page_size = 2;
        f.link_host = Some("localhost.invalid:1".into());
    });
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["drafts_made"], 6, "{status}");
    let queries = s.fake.state.lock().unwrap().statuses_queries.clone();
    assert!(queries[1].contains("max_id=5"), "{queries:?}");
}

/// A post claiming many images: only the first 20 are taken, the model is never asked more than
/// CAPTION_CONCURRENCY at once, and what the model says is cleaned of control characters.
async fn a_post_with_many_images_is_bounded_and_answers_are_cleaned(b: Backend) {
    let ids: Vec<String> = (0..30).map(|i| format!("x{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let s = setup(b, vec![FakePost::images(1, &refs)], 50).await;
    s.model.set(|m| {
        m.delay = Duration::from_millis(20);
        m.answer = "A\u{0} cat\u{202e} on {id}.".into();
    });
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(30))
        .await;
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["drafts_made"], 20);
    assert!(s.model.state.lock().unwrap().max_in_flight <= 2);
    let drafts = s.app.drafts(s.platform_id).await;
    assert_eq!(
        drafts[0].alt_text,
        format!("A cat on {}.", drafts[0].media_id)
    );
}

/// One person's many runs do not fill the workers: two of theirs at a time, and someone else's run
/// starts beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_cannot_take_every_worker() {
    let model = FakeModel::start().await;
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    model.set(|m| m.hold = Some(hold.clone()));
    let app = spawn_app_with(Backend::Sqlite, options_with(&model, Options::default())).await;
    let alice = app.create_user("alice", "user").await;
    app.login(&alice).await;
    let mut fakes = Vec::new();
    for _ in 0..3 {
        let (fake, id) = app
            .connect_flavor_with(&app.client, "alice", Flavor::Mastodon)
            .await;
        fake.set(|f| f.posts = simple_posts(1..=2));
        let csrf = app.csrf().await;
        app.post_form(&format!("/platforms/{id}/switch"), &[("csrf_token", &csrf)])
            .await;
        app.set_run_settings(&app.client, 50, "0", false).await;
        app.start_run_with(&app.client).await;
        fakes.push(fake);
    }
    let bob_client = new_client();
    let bob = app.create_user("bob", "user").await;
    app.login_with(&bob_client, &bob.username, PASSWORD).await;
    let (bob_fake, _) = app
        .connect_flavor_with(&bob_client, "bob", Flavor::Mastodon)
        .await;
    bob_fake.set(|f| f.posts = simple_posts(1..=2));
    app.set_run_settings(&bob_client, 50, "0", false).await;
    app.start_run_with(&bob_client).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.run_status_with(&bob_client).await["state"] == "running"
        })
        .await,
        "bob's run starts while alice's hold the model"
    );
    let states: Vec<String> = app
        .run_rows()
        .await
        .iter()
        .map(|r| r.state.clone())
        .collect();
    assert_eq!(
        states.iter().filter(|s| *s == "running").count(),
        3,
        "two of alice's and bob's: {states:?}"
    );
    hold.add_permits(1000);
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.run_rows().await.iter().all(|r| r.state == "completed")
        })
        .await
    );
}

both_databases!(
    hostile_paging_ends_and_counts_each_post_once,
    a_post_with_many_images_is_bounded_and_answers_are_cleaned,
);

/// Error pages come with the app's layout whichever layer made them: a handler's own error, an
/// id actix could not parse, a form without its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_pages_have_the_layout() {
    let app = spawn_app(Backend::Sqlite).await;
    let user = app.create_user("alice", "user").await;
    app.login(&user).await;
    for (path, status, heading) in [
        ("/runs/12345", 404, "Page not found"),
        ("/runs/not-a-number", 404, "Page not found"),
        ("/no/such/page", 404, "Page not found"),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains("/static/app.css"), "{path}: {body}");
        assert!(body.contains(heading), "{path}");
    }
    let r = app
        .post_form("/caption_generation/start", &[("csrf_token", "forged")])
        .await;
    assert_eq!(r.status().as_u16(), 403);
    let body = r.text().await.unwrap();
    assert!(body.contains("/static/app.css") && body.contains("This form has expired"));
}

/// Pages served oldest first, an empty page that links on, one image listed under two posts: every
/// post is read, none twice, and the image is drafted once.
async fn odd_pages_lose_nothing_and_draft_nothing_twice(b: Backend) {
    let mut posts = simple_posts(1..=9);
    posts.insert(0, FakePost::images(10, &["shared"]));
    posts.insert(1, FakePost::images(9, &[]));
    posts.remove(2);
    posts.insert(1, FakePost::images(9, &["shared", "m9"]));
    posts.remove(2);
    let s = setup(b, posts, 50).await;
    s.fake.set(|f| {
        f.page_size = 3;
        f.ascending_pages = true;
        f.empty_pages = vec![2];
    });
    s.app.start_run_with(&s.app.client).await;
    let status = s
        .app
        .finished_run_with(&s.app.client, Duration::from_secs(20))
        .await;
    assert_eq!(status["state"], "completed", "{status}");
    let ids = media_ids(&s.app.drafts(s.platform_id).await);
    assert_eq!(
        ids,
        ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "shared"],
        "{status}"
    );
    assert_eq!(s.model.calls("shared"), 1);
    assert_eq!(status["drafts_made"], 10);
}

/// However many workers claim at once, one person has two runs going at a time.
async fn one_persons_runs_are_claimed_two_at_a_time(b: Backend) {
    let app = spawn_app_with(b, Options::default().with("FEDIALT_WORKER", "false")).await;
    let user = app.create_user("many", "user").await;
    for i in 0..4 {
        queue_run_without_instance(&app, user.id, &format!("acct{i}")).await;
    }
    let claims = (0..6).map(|i| {
        let runs = app.state.runs.clone();
        tokio::spawn(async move {
            runs.claim(&format!("worker-{i}"), Duration::from_secs(60))
                .await
                .unwrap()
                .is_some()
        })
    });
    let mut taken = 0;
    for claim in claims {
        taken += usize::from(claim.await.unwrap());
    }
    assert_eq!(taken, 2);
}

both_databases!(
    odd_pages_lose_nothing_and_draft_nothing_twice,
    one_persons_runs_are_claimed_two_at_a_time,
);
