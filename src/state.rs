//! What every handler can reach, built once in startup.

use std::net::IpAddr;

use actix_web::HttpRequest;

use crate::auth::throttle::LoginThrottle;
use crate::cache::platforms::PlatformManager;
use crate::cache::settings::SettingsManager;
use crate::cache::Cache;
use crate::config::Config;
use crate::crypto::SecretBox;
use crate::keys::Keys;
use crate::platforms::InstanceClient;
use crate::store::Db;

pub struct AppState {
    pub config: Config,
    pub db: Db,
    /// The pool as the background tasks use it (their own statement counters).
    pub background: Db,
    pub cache: Cache,
    pub keys: Keys,
    pub throttle: LoginThrottle,
    pub platforms: PlatformManager,
    pub settings: SettingsManager,
    pub instances: InstanceClient,
    pub secrets: SecretBox,
}

impl AppState {
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
