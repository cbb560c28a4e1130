//! Builds the pools, the session store, the background tasks and the App.

use std::net::TcpListener;
use std::time::Duration;

use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_session::SessionMiddleware;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use actix_web_flash_messages::FlashMessagesFramework;
use anyhow::Context;

use crate::auth::throttle::LoginThrottle;
use crate::cache::Cache;
use crate::captioning::Captioner;
use crate::config::{Config, SessionStorage};
use crate::crypto::SecretBox;
use crate::jobs::{Worker, WorkerConfig};
use crate::keys::Keys;
use crate::platforms::guard::AddressPolicy;
use crate::platforms::InstanceClient;
use crate::services::platforms::PlatformManager;
use crate::services::runs::RunService;
use crate::services::settings::SettingsManager;
use crate::sessions::TieredSessionStore;
use crate::state::AppState;
use crate::store::{self, Db};

pub const SESSION_COOKIE: &str = "fedialt_session";
/// Under https the session cookie is `__Host-` prefixed: only this host, over https, for the whole
/// site, so a sibling subdomain cannot plant a session of its choosing.
pub const SESSION_COOKIE_HTTPS: &str = "__Host-fedialt_session";

pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        SESSION_COOKIE_HTTPS
    } else {
        SESSION_COOKIE
    }
}
const SWEEP_EVERY: Duration = Duration::from_secs(600);

pub struct Application {
    port: u16,
    server: Server,
    shutdown: tokio::sync::watch::Sender<bool>,
    state: web::Data<AppState>,
    /// The worker's loop, when this process runs one: waited for at shutdown, so its runs go back
    /// to the queue rather than waiting out their lease.
    worker: Option<tokio::task::JoinHandle<()>>,
}

/// The database and Redis, ready: migrations applied, pools built, breaker primed.
pub async fn connect(config: &Config) -> anyhow::Result<(Db, Cache)> {
    let url = config.effective_database_url();
    if config.database_url.is_none() {
        crate::data_dir::prepare(&config.data_dir).map_err(anyhow::Error::msg)?;
        crate::data_dir::private_sqlite(std::path::Path::new(&url))
            .map_err(|e| anyhow::anyhow!("FEDIALT_DATA_DIR: {e}"))?;
    }
    // A database that accepts the connection and never answers would hold the start forever:
    // give it twelve statement deadlines (a minute by default) to connect and migrate.
    let bound = config.db_timeout * 12;
    tokio::time::timeout(bound, store::migrate::run_pending(&url))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "DATABASE_URL: the database did not answer within {} s (is it starting, or is \
                 something between fedialt and it holding the connection?)",
                bound.as_secs()
            )
        })?
        .context("DATABASE_URL: could not prepare the database")?;
    let pool_size = if store::is_postgres_url(&url) { 16 } else { 8 };
    let db = Db::connect(&url, pool_size, config.db_timeout).await?;
    let cache = Cache::connect(&config.redis, &db)
        .await
        .context("REDIS_URL: not a usable Redis URL")?;
    Ok((db, cache))
}

impl Application {
    pub async fn build(mut config: Config) -> anyhow::Result<Application> {
        let keys = Keys::load(&config).map_err(anyhow::Error::msg)?;
        let (db, cache) = connect(&config).await?;
        let secrets = SecretBox::new(&keys.encryption);
        crate::platforms::connect::reseal_legacy_tokens(&db, &secrets)
            .await
            .context("could not re-seal the stored tokens")?;
        let listener = TcpListener::bind(config.bind)
            .with_context(|| format!("FEDIALT_BIND: cannot listen on {}", config.bind))?;
        let port = listener.local_addr()?.port();
        // FEDIALT_BIND with port 0 (any free port): the derived public URL gets the real one.
        if config.public_url.port() == Some(0) {
            let _ = config.public_url.set_port(Some(port));
        }

        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let background = db.background();
        // Keeping the Redis copy in step (outbox, breaker recovery) is the web app's own business;
        // the worker's (caption runs, the housekeeping sweep) runs here unless FEDIALT_WORKER=false.
        cache.spawn_maintenance(background.clone(), shutdown_rx.clone());
        let runs = RunService::new(db.clone(), cache.clone());
        let worker = build_worker(&config, &background, &cache, &runs, &secrets)?;
        let worker_task = if config.worker {
            crate::sweep::spawn(background.clone(), SWEEP_EVERY, shutdown_rx.clone());
            Some(tokio::spawn(worker.clone().run(shutdown_rx)))
        } else {
            tracing::info!("FEDIALT_WORKER=false: no worker in this process; run `fedialt worker`");
            None
        };

        let session_store = TieredSessionStore::new(
            db.clone(),
            cache.clone(),
            config.session_storage == SessionStorage::Redis,
            config.session_idle,
            config.session_max,
        );
        let cookie_key = Key::from(&keys.cookie);
        let flash_key = Key::from(&keys.flash);
        let secure = config.secure_cookies();
        let idle = actix_web::cookie::time::Duration::seconds(config.session_idle.as_secs() as i64);
        let instances = instance_client(&config)?;
        let templates = crate::web::templates::build()
            .map_err(|e| anyhow::anyhow!("the page templates do not parse: {e:?}"))?;
        let state = web::Data::new(AppState {
            templates,
            http: crate::state::HttpStats::default(),
            background,
            throttle: LoginThrottle::new(db.clone(), cache.clone()),
            passwords: crate::auth::password::PasswordChecks::for_this_machine(),
            platforms: PlatformManager::new(db.clone(), cache.clone()),
            settings: SettingsManager::new(
                db.clone(),
                cache.clone(),
                PlatformManager::new(db.clone(), cache.clone()),
            ),
            watches: crate::services::watch::WatchService::new(db.clone(), cache.clone()),
            instances,
            secrets: secrets.clone(),
            review: crate::services::review::ReviewService::new(db.clone(), &runs),
            model: crate::services::model::ModelService::new(
                db.clone(),
                cache.clone(),
                config.caption.clone(),
                secrets.clone(),
            ),
            runs,
            worker,
            config,
            db,
            cache,
            keys,
        });
        let app_state = state.clone();
        let workers = state.config.http_workers;

        let server = HttpServer::new(move || {
            // Runs on each HTTP worker's thread: the first one becomes the tracking connection's home.
            app_state.cache.track_on_this_worker();
            let flash_store = crate::web::flash::QuietCookieStore::new(flash_key.clone(), secure);
            let flashes = FlashMessagesFramework::builder(flash_store).build();
            let sessions = SessionMiddleware::builder(session_store.clone(), cookie_key.clone())
                .cookie_name(session_cookie_name(secure).to_owned())
                .cookie_secure(secure)
                .cookie_http_only(true)
                .cookie_same_site(SameSite::Lax)
                .cookie_content_security(CookieContentSecurity::Signed)
                .session_lifecycle(BrowserSession::default().state_ttl(idle))
                .build();
            App::new()
                .app_data(app_state.clone())
                .wrap(crate::web::middleware::error_shapes())
                .wrap(flashes)
                .wrap(sessions)
                .wrap(from_fn(crate::web::middleware::session_failures))
                .wrap(crate::web::middleware::security_headers(secure))
                .wrap(from_fn(crate::web::middleware::request_span))
                .configure(crate::routes::configure)
        })
        .workers(workers)
        .shutdown_timeout(10)
        .listen(listener)?
        .run();

        Ok(Application {
            port,
            server,
            shutdown,
            state,
            worker: worker_task,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state, for tests that read counters (statements, Redis round trips).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM or Ctrl-C (actix-server stops gracefully on both), then stops the
    /// background tasks.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        let _ = self.shutdown.send(true);
        if let Some(worker) = self.worker {
            let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
        }
        result
    }
}

/// The client for instances and their images, behind the private-address guard.
fn instance_client(config: &Config) -> anyhow::Result<InstanceClient> {
    InstanceClient::new(
        AddressPolicy {
            allow_private: config.allow_private_network,
            exempt: config.allowed_private_addresses.clone(),
            overrides: config.dns_overrides.clone(),
        },
        config.platform_timeout,
    )
    .context("could not build the HTTP client")
}

/// The worker of this process: caption runs, with the instance and model clients it needs.
fn build_worker(
    config: &Config,
    db: &Db,
    cache: &Cache,
    runs: &RunService,
    secrets: &SecretBox,
) -> anyhow::Result<Worker> {
    let instances = instance_client(config)?;
    let captioner = Captioner::new(config.caption.clone())
        .context("could not build the model's HTTP client")?;
    let platforms = PlatformManager::new(db.clone(), cache.clone());
    Ok(Worker::new(
        db.clone(),
        crate::jobs::Services {
            runs: runs.on(db.clone()),
            platforms: platforms.clone(),
            settings: SettingsManager::new(db.clone(), cache.clone(), platforms),
            watches: crate::services::watch::WatchService::new(db.clone(), cache.clone()),
        },
        instances,
        secrets.clone(),
        crate::jobs::Model {
            initial: captioner,
            chosen: crate::services::model::ModelService::new(
                db.clone(),
                cache.clone(),
                config.caption.clone(),
                secrets.clone(),
            ),
        },
        WorkerConfig {
            lease: config.job_lease,
            poll: config.job_poll,
            watch_poll: config.watch_poll,
            max_image_bytes: config.max_image_bytes,
            max_image_pixels: config.max_image_pixels,
        },
    ))
}

/// `fedialt worker`: the background work without the web app: caption runs, the cache
/// maintenance (outbox drain, Redis recovery) and the housekeeping sweep.
pub async fn run_worker(config: Config) -> anyhow::Result<()> {
    let keys = Keys::load(&config).map_err(anyhow::Error::msg)?;
    let (db, cache) = connect(&config).await?;
    let secrets = SecretBox::new(&keys.encryption);
    crate::platforms::connect::reseal_legacy_tokens(&db, &secrets)
        .await
        .context("could not re-seal the stored tokens")?;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    cache.spawn_maintenance(db.clone(), shutdown_rx.clone());
    crate::sweep::spawn(db.clone(), SWEEP_EVERY, shutdown_rx.clone());
    let runs = RunService::new(db.clone(), cache.clone());
    let worker = build_worker(&config, &db, &cache, &runs, &secrets)?;
    let running = tokio::spawn(worker.run(shutdown_rx));
    tracing::info!("worker running");
    wait_for_signal().await;
    let _ = shutdown.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
