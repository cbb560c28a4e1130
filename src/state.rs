//! What every handler can reach, built once in startup.

use std::net::IpAddr;

use actix_web::HttpRequest;

use crate::auth::throttle::LoginThrottle;
use crate::cache::Cache;
use crate::config::Config;
use crate::crypto::SecretBox;
use crate::jobs::Worker;
use crate::keys::Keys;
use crate::platforms::InstanceClient;
use crate::services::platforms::PlatformManager;
use crate::services::runs::RunService;
use crate::services::settings::SettingsManager;
use crate::store::Db;

/// Responses by status class (1xx … 5xx), counted by the request middleware, shown at /metrics.
#[derive(Default)]
pub struct HttpStats {
    pub responses: [std::sync::atomic::AtomicU64; 5],
}

impl HttpStats {
    pub const CLASSES: [&'static str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

    pub fn count(&self, status: u16) {
        if let Some(counter) = (status / 100)
            .checked_sub(1)
            .and_then(|i| self.responses.get(usize::from(i)))
        {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

pub struct AppState {
    pub config: Config,
    /// The page templates, parsed once at start.
    pub templates: tera::Tera,
    pub http: HttpStats,
    pub db: Db,
    /// The pool as the background tasks use it (their own statement counters).
    pub background: Db,
    pub cache: Cache,
    pub keys: Keys,
    pub throttle: LoginThrottle,
    /// The cap on concurrent password checks.
    pub passwords: crate::auth::password::PasswordChecks,
    pub platforms: PlatformManager,
    pub settings: SettingsManager,
    /// Whether each connection is watched for new posts (the person's settings, what was seen).
    pub watches: crate::services::watch::WatchService,
    pub runs: RunService,
    pub review: crate::services::review::ReviewService,
    /// The vision model admins choose (over the environment's).
    pub model: crate::services::model::ModelService,
    /// This process's worker (running unless FEDIALT_WORKER=false; tests may drain it by hand).
    pub worker: Worker,
    pub instances: InstanceClient,
    pub secrets: SecretBox,
}

impl AppState {
    /// How many of the person's drafts wait for review (the navigation's count); None when it
    /// cannot be read now (the page goes on without it).
    pub async fn waiting(&self, user: crate::domain::UserId) -> Option<i64> {
        self.runs.waiting.get(user).await.ok()
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the nearest address in
    /// X-Forwarded-For that is not itself a trusted proxy.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr().map(|a| a.ip())?;
        let trusted = |ip: IpAddr| self.config.trusted_proxies.iter().any(|p| p.contains(ip));
        if !trusted(peer) {
            return Some(peer);
        }
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let chain: Vec<IpAddr> = forwarded
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        Some(
            chain
                .into_iter()
                .rev()
                .find(|ip| !trusted(*ip))
                .unwrap_or(peer),
        )
    }
}
