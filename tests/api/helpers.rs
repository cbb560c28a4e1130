//! Spawns the real app on a random port against real services: a fresh PostgreSQL database or
//! SQLite file per test, the shared Redis under a prefix of the test's own (or a private
//! redis-server for tests that flush, stop or kill it), and a cookie-keeping client that does not
//! follow redirects.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::web;
use base64::Engine;
use fedialt::config::Config;
use fedialt::startup::Application;
use fedialt::state::AppState;

pub use crate::services::{BlackHole, CuttableProxy, ProxyMode, RedisServer};

pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379/0";
pub const PASSWORD: &str = "correct horse battery staple";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

pub fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub fn admin_pg_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of the test's own, removed when dropped.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    pub data_dir: PathBuf,
    pg_name: Option<String>,
}

impl TestDatabase {
    /// A database for an app: on PostgreSQL a copy of the migrated template.
    pub async fn new(backend: Backend) -> TestDatabase {
        TestDatabase::make(backend, true).await
    }

    /// A database with nothing in it (for the migration tests).
    pub async fn empty(backend: Backend) -> TestDatabase {
        TestDatabase::make(backend, false).await
    }

    async fn make(backend: Backend, migrated: bool) -> TestDatabase {
        let data_dir = std::env::temp_dir().join(format!("fedialt-test-{}", random_suffix()));
        std::fs::create_dir_all(&data_dir).unwrap();
        match backend {
            Backend::Sqlite => TestDatabase {
                url: data_dir.join("fedialt.sqlite3").display().to_string(),
                backend,
                data_dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let name = format!("fedialt_test_{}", random_suffix());
                let create = if migrated {
                    format!(
                        "CREATE DATABASE {name} TEMPLATE {}",
                        migrated_template().await
                    )
                } else {
                    format!("CREATE DATABASE {name}")
                };
                pg_execute(&admin_pg_url(), &create).await;
                let base = admin_pg_url();
                let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
                TestDatabase {
                    url,
                    backend,
                    data_dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// DROP DATABASE … WITH (FORCE): also cuts the app's open connections.
    pub async fn drop_now(&self) {
        if let Some(name) = &self.pg_name {
            pg_execute(
                &admin_pg_url(),
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some(name) = self.pg_name.take() {
            // Drop runs inside the test's runtime: do the async work on a thread of its own.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(pg_execute(
                        &admin_pg_url(),
                        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    ));
                }
            })
            .join();
        }
    }
}

/// A PostgreSQL database with every migration applied, made once per test run: each test's
/// database is a copy of it (CREATE DATABASE … TEMPLATE), which is much faster than migrating each
/// time. Its name starts like the tests' databases, so scripts/test.sh removes it next run.
async fn migrated_template() -> &'static str {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("fedialt_test_template_{}", random_suffix());
            pg_execute(&admin_pg_url(), &format!("CREATE DATABASE {name}")).await;
            let base = admin_pg_url();
            let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
            fedialt::store::migrate::run_pending(&url)
                .await
                .expect("the template database migrates");
            name
        })
        .await
}

/// Logs of the apps a test spawns: shown for a failing test with TEST_LOG=1 (`TEST_LOG=1
/// ./scripts/test.sh name`), captured per test like its other output; off otherwise.
fn init_test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}

pub async fn pg_execute(url: &str, sql: &str) {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .expect("PostgreSQL is reachable");
    diesel::sql_query(sql).execute(&mut conn).await.expect(sql);
}

/// How to spawn an app.
#[derive(Clone, Default)]
pub struct Options {
    /// REDIS_URL; None = the shared Redis on 6379.
    pub redis_url: Option<String>,
    /// Extra environment, as the binary would read it.
    pub env: Vec<(String, String)>,
}

impl Options {
    pub fn redis(url: impl Into<String>) -> Options {
        Options {
            redis_url: Some(url.into()),
            ..Options::default()
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Options {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub state: web::Data<AppState>,
    pub db: std::sync::Arc<TestDatabase>,
    pub prefix: String,
    pub secret_key: String,
    pub options: Options,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    let db = std::sync::Arc::new(TestDatabase::new(backend).await);
    let prefix = format!("fedialt-test-{}:", random_suffix());
    let key =
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>().repeat(2));
    spawn_on(db, prefix, key, options).await
}

/// Another instance sharing this one's database, Redis prefix and secret key.
pub async fn spawn_sibling(app: &TestApp, options: Options) -> TestApp {
    spawn_on(
        app.db.clone(),
        app.prefix.clone(),
        app.secret_key.clone(),
        options,
    )
    .await
}

pub fn config_for(db: &TestDatabase, prefix: &str, secret_key: &str, options: &Options) -> Config {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("FEDIALT_BIND".into(), "127.0.0.1:0".into());
    env.insert("FEDIALT_DATA_DIR".into(), db.data_dir.display().to_string());
    if db.backend == Backend::Postgres {
        env.insert("DATABASE_URL".into(), db.url.clone());
    }
    env.insert(
        "REDIS_URL".into(),
        options
            .redis_url
            .clone()
            .unwrap_or_else(|| SHARED_REDIS.into()),
    );
    env.insert("FEDIALT_REDIS_PREFIX".into(), prefix.to_owned());
    env.insert("FEDIALT_SECRET_KEY".into(), secret_key.to_owned());
    env.insert("FEDIALT_OUTBOX_INTERVAL_MS".into(), "200".into());
    env.insert("FEDIALT_REDIS_TIMEOUT_MS".into(), "250".into());
    env.insert("FEDIALT_ALLOW_PRIVATE_NETWORK".into(), "true".into());
    for (k, v) in &options.env {
        env.insert(k.clone(), v.clone());
    }
    Config::from_lookup(|k| env.get(k).cloned()).expect("test configuration is valid")
}

/// An app on a database the test made itself (to put a proxy in front of it, say).
pub async fn spawn_app_on(db: std::sync::Arc<TestDatabase>, options: Options) -> TestApp {
    let prefix = format!("fedialt-test-{}:", random_suffix());
    let key =
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>().repeat(2));
    spawn_on(db, prefix, key, options).await
}

async fn spawn_on(
    db: std::sync::Arc<TestDatabase>,
    prefix: String,
    secret_key: String,
    options: Options,
) -> TestApp {
    init_test_log();
    let config = config_for(&db, &prefix, &secret_key, &options);
    let app = Application::build(config).await.expect("the app builds");
    let port = app.port();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: new_client(),
        state,
        db,
        prefix,
        secret_key,
        options,
    }
}

/// A missed invalidation fails loudly: once a test is over and the app's Redis answers, every
/// outbox row must reach it within a few seconds (crates.io's leftover-jobs check, for the cache).
impl Drop for TestApp {
    fn drop(&mut self) {
        if std::thread::panicking() || !self.state.cache.enabled() {
            return;
        }
        let state = self.state.clone();
        // A pool of its own on this thread's runtime: the app's pool belongs to the test's.
        let url = self.db.url.clone();
        let left = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let deadline = Instant::now() + Duration::from_secs(10);
                let db = fedialt::store::Db::connect(&url, 1, Duration::from_secs(5))
                    .await
                    .ok()?;
                loop {
                    if state.cache.status() != fedialt::cache::RedisStatus::Ok {
                        return None; // Redis is away at the end of this test: nothing to check.
                    }
                    let rows = match db.conn().await {
                        Ok(mut conn) => fedialt::store::outbox::count(&mut conn).await.ok()?,
                        Err(_) => return None,
                    };
                    if rows == 0 {
                        return None;
                    }
                    if Instant::now() > deadline {
                        return Some(rows);
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            })
        })
        .join()
        .ok()
        .flatten();
        if let Some(rows) = left {
            panic!(
                "{rows} outbox rows never reached a reachable Redis: an invalidation was missed"
            );
        }
    }
}

pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Text as Tera writes it into HTML (it escapes & < > " ' and /).
pub fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2F;")
}

/// The session cookie a response sets (its value, signed).
pub fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("fedialt_session="))
        .map(|c| c.split(';').next().unwrap_or("").to_owned())
        .expect("a session cookie")
}

/// A client that replays one session cookie by hand (to try a cookie after it was ended).
pub async fn get_with_cookie(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(path))
        .header("Cookie", format!("fedialt_session={cookie}"))
        .send()
        .await
        .unwrap()
}

/// The value of `<input … name="csrf_token" value="…">` or `<meta name="csrf-token" content="…">`.
pub fn csrf_from(html: &str) -> String {
    for marker in [
        "name=\"csrf_token\" value=\"",
        "name=\"csrf-token\" content=\"",
    ] {
        if let Some(start) = html.find(marker) {
            let rest = &html[start + marker.len()..];
            return rest[..rest.find('"').unwrap()].to_owned();
        }
    }
    panic!("no CSRF token in the page");
}

pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub password: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_with(&self, client: &reqwest::Client, path: &str) -> reqwest::Response {
        client.get(self.url(path)).send().await.unwrap()
    }

    /// The text of a page, as this app's own client sees it.
    pub async fn page(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// The text of a page, as `client` sees it.
    pub async fn page_with(&self, client: &reqwest::Client, path: &str) -> String {
        self.get_with(client, path).await.text().await.unwrap()
    }

    pub async fn create_user(&self, username: &str, role: &str) -> TestUser {
        self.create_user_full(username, role, true).await
    }

    pub async fn create_user_full(&self, username: &str, role: &str, active: bool) -> TestUser {
        let hash = fedialt::auth::password::hash_blocking(PASSWORD).unwrap();
        let mut conn = self.state.db.conn().await.unwrap();
        let id = fedialt::store::users::insert(
            &mut conn,
            &fedialt::store::users::NewUser {
                username,
                email: &format!("{username}@example.org"),
                password_hash: &hash,
                role,
                active,
                created_at: fedialt::store::now(),
            },
        )
        .await
        .unwrap();
        TestUser {
            id,
            username: username.to_owned(),
            password: PASSWORD.to_owned(),
        }
    }

    /// GET /login, then POST it with the form's CSRF token.
    pub async fn login_with(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        let page = client
            .get(self.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let token = csrf_from(&page);
        client
            .post(self.url("/login"))
            .form(&[
                ("username", username),
                ("password", password),
                ("csrf_token", &token),
            ])
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, user: &TestUser) -> reqwest::Response {
        let response = self
            .login_with(&self.client, &user.username, &user.password)
            .await;
        assert_eq!(response.status().as_u16(), 303, "sign-in succeeds");
        response
    }

    /// The signed-in session's CSRF token, from a page's meta tag.
    pub async fn csrf_with(&self, client: &reqwest::Client) -> String {
        let page = client.get(self.url("/account")).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 200, "signed in");
        csrf_from(&page.text().await.unwrap())
    }

    pub async fn csrf(&self) -> String {
        self.csrf_with(&self.client).await
    }

    pub async fn post_form_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        client
            .post(self.url(path))
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.post_form_with(&self.client, path, fields).await
    }

    pub fn statements(&self) -> u64 {
        self.state.db.stats().statements.load(Ordering::SeqCst)
    }

    pub fn checkouts(&self) -> u64 {
        self.state.db.stats().checkouts.load(Ordering::SeqCst)
    }

    pub fn redis_round_trips(&self) -> u64 {
        self.state.cache.stats().round_trips.load(Ordering::SeqCst)
    }

    pub fn redis_commands(&self) -> u64 {
        self.state.cache.stats().commands.load(Ordering::SeqCst)
    }

    /// The keys this app has in a Redis (its prefix only).
    pub async fn redis_keys(&self, redis_url: &str) -> Vec<String> {
        let client = redis::Client::open(redis_url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    pub async fn session_rows(&self) -> i64 {
        let mut conn = self.state.db.conn().await.unwrap();
        use diesel::QueryDsl;
        use diesel_async::RunQueryDsl;
        fedialt::run!(&mut conn, |c| fedialt::store::schema::sessions::table
            .count()
            .get_result::<i64>(c)
            .await)
        .unwrap()
    }

    pub async fn outbox_rows(&self) -> i64 {
        let mut conn = self.state.db.conn().await.unwrap();
        fedialt::store::outbox::count(&mut conn).await.unwrap()
    }

    pub fn redis_status(&self) -> fedialt::cache::RedisStatus {
        self.state.cache.status()
    }
}

/// Polls `check` until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestApp {
    /// Connects a fresh account on a new fake Mastodon instance for the signed-in client; returns
    /// the instance (keep it alive) and the connection's id.
    pub async fn connect_platform_with(
        &self,
        client: &reqwest::Client,
        username: &str,
    ) -> (crate::fakes::instance::FakeInstance, i64) {
        self.connect_flavor_with(client, username, crate::fakes::instance::Flavor::Mastodon)
            .await
    }

    /// Connects a fresh account on a new fake instance of the given flavor.
    pub async fn connect_flavor_with(
        &self,
        client: &reqwest::Client,
        username: &str,
        flavor: crate::fakes::instance::Flavor,
    ) -> (crate::fakes::instance::FakeInstance, i64) {
        let fake = crate::fakes::instance::FakeInstance::start(flavor).await;
        let token = format!("token-{username}-{}", random_suffix());
        fake.add_account(&token, username);
        let csrf = self.csrf_with(client).await;
        let r = self
            .post_form_with(
                client,
                "/platforms",
                &[
                    ("csrf_token", &csrf),
                    ("instance_url", &fake.url),
                    ("access_token", &token),
                ],
            )
            .await;
        assert_eq!(r.status().as_u16(), 303, "the account connects");
        let mut conn = self.state.db.conn().await.unwrap();
        let user_id = {
            use diesel::{ExpressionMethods, QueryDsl};
            use diesel_async::RunQueryDsl;
            use fedialt::store::schema::users;
            fedialt::run!(&mut conn, |c| users::table
                .filter(users::username.eq(username))
                .select(users::id)
                .first::<i64>(c)
                .await)
            .unwrap()
        };
        let id = fedialt::store::platforms::for_user(&mut conn, user_id)
            .await
            .unwrap()
            .last()
            .unwrap()
            .id;
        (fake, id)
    }

    pub async fn connect_platform(
        &self,
        username: &str,
    ) -> (crate::fakes::instance::FakeInstance, i64) {
        self.connect_platform_with(&self.client, username).await
    }
}
