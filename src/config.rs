//! Typed settings from the environment (and `.env`, read in main). A bad value stops the start
//! with one line naming the variable. Secrets are wrapped so that Debug never prints them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

/// A value that must never reach a log line, a page or a Debug print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn bad(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStorage {
    Redis,
    Database,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptionBackend {
    Ollama,
    OpenAi,
}

/// An address, or a network in CIDR form (trusted proxies, guard exemptions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpNetwork {
    pub network: IpAddr,
    pub prefix: u8,
}

impl IpNetwork {
    pub fn parse(text: &str) -> Option<IpNetwork> {
        parse_proxy(text)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bytes: &[u8], prefix: u8) -> Vec<u8> {
            bytes
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let bits = (prefix as usize).saturating_sub(i * 8).min(8) as u32;
                    if bits == 0 {
                        0
                    } else {
                        b & (0xffu8 << (8 - bits))
                    }
                })
                .collect()
        }
        let ip = match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(&n.octets(), self.prefix) == masked(&a.octets(), self.prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(&n.octets(), self.prefix) == masked(&a.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// None: Redis is off (REDIS_URL=none).
    pub url: Option<Secret<String>>,
    pub prefix: String,
    /// Every Redis command's own deadline.
    pub command_timeout: Duration,
    /// How often the outbox is drained and a tripped circuit breaker probes Redis.
    pub outbox_interval: Duration,
    /// Keep read copies in process memory, kept fresh by Redis's invalidation messages.
    pub near_cache: bool,
    /// How much memory those copies may take.
    pub near_cache_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct CaptionConfig {
    pub backend: CaptionBackend,
    pub base_url: Url,
    pub model: String,
    pub api_key: Option<Secret<String>>,
    pub timeout: Duration,
    pub concurrency: u32,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub bind: SocketAddr,
    pub public_url: Url,
    pub data_dir: PathBuf,
    /// None: the SQLite file in the data dir.
    pub database_url: Option<Secret<String>>,
    pub redis: RedisConfig,
    pub session_storage: SessionStorage,
    pub secret_key: Option<Secret<Vec<u8>>>,
    pub worker: bool,
    /// How long a worker holds a run without renewing before another may take it up.
    pub job_lease: Duration,
    /// How often an idle worker looks for runs without being woken.
    pub job_poll: Duration,
    /// How often a watched account without a working stream (Pixelfed) is checked for new posts.
    pub watch_poll: Duration,
    /// HTTP worker threads (FEDIALT_WORKERS; default: the number of cores).
    pub http_workers: usize,
    pub allow_private_network: bool,
    pub trusted_proxies: Vec<IpNetwork>,
    /// Networks the private-address guard lets through even when private networks are refused.
    pub allowed_private_addresses: Vec<IpNetwork>,
    /// Fixed DNS answers (`host=ip`), still checked by the guard.
    pub dns_overrides: Vec<(String, IpAddr)>,
    /// Deadline of each call to an instance.
    pub platform_timeout: Duration,
    /// Deadline of a database check-out and of each statement; past it the database breaker opens.
    pub db_timeout: Duration,
    pub session_idle: Duration,
    /// The absolute lifetime of a session, from sign-in.
    pub session_max: Duration,
    pub metrics_token: Option<Secret<String>>,
    pub caption: CaptionConfig,
    pub max_image_bytes: u64,
    pub max_image_pixels: u64,
    pub log_format: LogFormat,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can hand in their own environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let bind_text = get("FEDIALT_BIND").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let bind: SocketAddr = bind_text.parse().map_err(|_| {
            bad(
                "FEDIALT_BIND",
                format!("expected an address and port such as 127.0.0.1:8080, got {bind_text:?}"),
            )
        })?;

        let public_url = match get("FEDIALT_PUBLIC_URL") {
            Some(text) => parse_http_url("FEDIALT_PUBLIC_URL", &text)?,
            None => parse_http_url("FEDIALT_BIND", &format!("http://{bind}"))?,
        };

        let data_dir =
            PathBuf::from(get("FEDIALT_DATA_DIR").unwrap_or_else(|| "./data".to_owned()));

        let database_url = match get("DATABASE_URL") {
            None => None,
            Some(url) if crate::store::is_postgres_url(&url) || url.starts_with("sqlite://") => {
                Some(Secret::new(url.trim_start_matches("sqlite://").to_owned()))
            }
            Some(_) => {
                return Err(bad(
                    "DATABASE_URL",
                    "expected postgres://… or sqlite://path (leave it unset for the SQLite file in FEDIALT_DATA_DIR)",
                ))
            }
        };

        let redis = RedisConfig {
            url: redis_url(&get)?,
            prefix: get("FEDIALT_REDIS_PREFIX").unwrap_or_else(|| "fedialt:".to_owned()),
            command_timeout: Duration::from_millis(parse_num(
                &get,
                "FEDIALT_REDIS_TIMEOUT_MS",
                250,
                1,
                60_000,
            )?),
            outbox_interval: Duration::from_millis(parse_num(
                &get,
                "FEDIALT_OUTBOX_INTERVAL_MS",
                2000,
                50,
                600_000,
            )?),
            near_cache: parse_bool(&get, "FEDIALT_NEAR_CACHE", true)?,
            near_cache_bytes: 1024
                * 1024
                * parse_num(&get, "FEDIALT_NEAR_CACHE_MB", 64, 1, 64 * 1024)?,
        };

        let session_storage = match get("SESSION_STORAGE").as_deref() {
            None | Some("redis") => SessionStorage::Redis,
            Some("database") => SessionStorage::Database,
            Some(_) => return Err(bad("SESSION_STORAGE", "expected redis or database")),
        };

        let secret_key = match get("FEDIALT_SECRET_KEY") {
            None => None,
            Some(text) => Some(Secret::new(
                crate::keys::decode_secret_key(&text)
                    .map_err(|message| bad("FEDIALT_SECRET_KEY", message))?,
            )),
        };
        if secret_key.is_none()
            && database_url
                .as_ref()
                .is_some_and(|u| crate::store::is_postgres_url(u.expose()))
        {
            return Err(bad(
                "FEDIALT_SECRET_KEY",
                "required when DATABASE_URL is PostgreSQL, so that every instance and worker shares one key \
                 (make one with: head -c 64 /dev/urandom | base64 -w0)",
            ));
        }

        let trusted_proxies = parse_networks(&get, "FEDIALT_TRUSTED_PROXIES")?;

        let allowed_private_addresses = parse_networks(&get, "FEDIALT_ALLOWED_PRIVATE_ADDRESSES")?;
        let dns_overrides = match get("FEDIALT_DNS_OVERRIDES") {
            None => Vec::new(),
            Some(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|pair| {
                    pair.split_once('=')
                        .and_then(|(h, ip)| {
                            Some((h.trim().to_lowercase(), ip.trim().parse().ok()?))
                        })
                        .ok_or_else(|| {
                            bad("FEDIALT_DNS_OVERRIDES", format!("{pair:?} is not host=ip"))
                        })
                })
                .collect::<Result<_, _>>()?,
        };

        let caption_backend = match get("CAPTION_BACKEND").as_deref() {
            None | Some("ollama") => CaptionBackend::Ollama,
            Some("openai") => CaptionBackend::OpenAi,
            Some(_) => return Err(bad("CAPTION_BACKEND", "expected ollama or openai")),
        };
        let caption = CaptionConfig {
            backend: caption_backend,
            base_url: parse_http_url(
                "CAPTION_BASE_URL",
                &get("CAPTION_BASE_URL").unwrap_or_else(|| "http://127.0.0.1:11434".to_owned()),
            )?,
            model: get("CAPTION_MODEL").unwrap_or_else(|| "llava:7b".to_owned()),
            api_key: get("CAPTION_API_KEY").map(Secret::new),
            timeout: Duration::from_secs(parse_num(&get, "CAPTION_TIMEOUT_SECS", 120, 1, 3600)?),
            concurrency: parse_num(&get, "CAPTION_CONCURRENCY", 2, 1, 64)? as u32,
        };

        let log_format = match get("LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(bad("LOG_FORMAT", "expected pretty or json")),
        };

        Ok(Config {
            bind,
            public_url,
            data_dir,
            database_url,
            redis,
            session_storage,
            secret_key,
            worker: parse_bool(&get, "FEDIALT_WORKER", true)?,
            job_poll: Duration::from_secs(parse_num(&get, "FEDIALT_JOB_POLL_SECS", 2, 1, 3600)?),
            watch_poll: Duration::from_secs(parse_num(
                &get,
                "FEDIALT_WATCH_POLL_SECS",
                300,
                1,
                24 * 3600,
            )?),
            job_lease: Duration::from_secs(parse_num(&get, "FEDIALT_JOB_LEASE_SECS", 30, 1, 3600)?),
            http_workers: parse_num(
                &get,
                "FEDIALT_WORKERS",
                std::thread::available_parallelism()
                    .map(|n| n.get() as u64)
                    .unwrap_or(2),
                1,
                512,
            )? as usize,
            allow_private_network: parse_bool(&get, "FEDIALT_ALLOW_PRIVATE_NETWORK", false)?,
            trusted_proxies,
            allowed_private_addresses,
            dns_overrides,
            platform_timeout: Duration::from_secs(parse_num(
                &get,
                "FEDIALT_PLATFORM_TIMEOUT_SECS",
                20,
                1,
                600,
            )?),
            db_timeout: Duration::from_millis(parse_num(
                &get,
                "FEDIALT_DB_TIMEOUT_MS",
                5000,
                50,
                600_000,
            )?),
            session_idle: Duration::from_secs(
                60 * parse_num(&get, "FEDIALT_SESSION_IDLE_MINUTES", 120, 1, 60 * 24 * 90)?,
            ),
            session_max: Duration::from_secs(
                3600 * parse_num(&get, "FEDIALT_SESSION_MAX_HOURS", 720, 1, 24 * 366)?,
            ),
            metrics_token: get("FEDIALT_METRICS_TOKEN").map(Secret::new),
            caption,
            max_image_bytes: parse_num(&get, "FEDIALT_MAX_IMAGE_BYTES", 20_971_520, 1024, 1 << 30)?,
            max_image_pixels: parse_num(&get, "FEDIALT_MAX_IMAGE_PIXELS", 50_000_000, 1, 1 << 32)?,
            log_format,
        })
    }

    /// A session's idle timeout and absolute lifetime, in seconds.
    pub fn session_limits(&self) -> crate::store::sessions::Lifetime {
        crate::store::sessions::Lifetime {
            idle: self.session_idle.as_secs() as i64,
            max: self.session_max.as_secs() as i64,
        }
    }

    /// Cookies are Secure when people reach the app over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The database URL to use: DATABASE_URL, else the SQLite file in the data dir.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().clone(),
            None => crate::store::sqlite_path_in(&self.data_dir),
        }
    }
}

const REDIS_URL_FORMS: &str = "expected redis://[:password@]host:port/db, rediss://… (TLS; add \
     #insecure for a self-signed certificate), unix:///path/to/redis.sock, or none (no Redis)";

fn redis_url(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Secret<String>>, ConfigError> {
    if let Some(url) = get("REDIS_URL") {
        if url.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let parsed = Url::parse(&url).map_err(|_| bad("REDIS_URL", REDIS_URL_FORMS))?;
        if !matches!(parsed.scheme(), "redis" | "rediss" | "unix" | "redis+unix") {
            return Err(bad("REDIS_URL", REDIS_URL_FORMS));
        }
        return Ok(Some(Secret::new(url)));
    }
    let host = get("REDIS_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = parse_num(get, "REDIS_PORT", 6379, 1, 65535)?;
    let db = parse_num(get, "REDIS_DB", 0, 0, 1024)?;
    let scheme = if parse_bool(get, "REDIS_SSL", false)? {
        "rediss"
    } else {
        "redis"
    };
    let auth = match get("REDIS_PASSWORD") {
        Some(password) => format!(":{}@", url_encode(&password)),
        None => String::new(),
    };
    Ok(Some(Secret::new(format!(
        "{scheme}://{auth}{host}:{port}/{db}"
    ))))
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn parse_http_url(variable: &'static str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|_| bad(variable, format!("{text:?} is not a URL")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad(variable, "expected an http:// or https:// URL"));
    }
    Ok(url)
}

fn parse_num(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match get(variable) {
        None => Ok(default),
        Some(text) => match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(bad(
                variable,
                format!("expected a whole number from {min} to {max}"),
            )),
        },
    }
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(variable).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(_) => Err(bad(variable, "expected true or false")),
    }
}

fn parse_networks(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<Vec<IpNetwork>, ConfigError> {
    match get(variable) {
        None => Ok(Vec::new()),
        Some(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_proxy(s).ok_or_else(|| {
                    bad(
                        variable,
                        format!("{s:?} is not an IP address or CIDR network"),
                    )
                })
            })
            .collect(),
    }
}

fn parse_proxy(text: &str) -> Option<IpNetwork> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let network: IpAddr = addr.parse().ok()?;
    let max = if network.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    (prefix <= max).then_some(IpNetwork { network, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(
            c.redis.url.as_ref().unwrap().expose(),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(c.redis.prefix, "fedialt:");
        assert_eq!(c.session_idle, Duration::from_secs(120 * 60));
        assert_eq!(c.session_max, Duration::from_secs(720 * 3600));
        assert!(c.worker);
        assert!(!c.allow_private_network);
        assert!(!c.secure_cookies());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("FEDIALT_BIND", "nowhere"),
            ("REDIS_URL", "http://x"),
            ("SESSION_STORAGE", "memory"),
            ("FEDIALT_SECRET_KEY", "c2hvcnQ="),
            ("FEDIALT_SESSION_IDLE_MINUTES", "0"),
            ("FEDIALT_SESSION_MAX_HOURS", "0"),
            ("FEDIALT_TRUSTED_PROXIES", "10.0.0.0/99"),
            ("LOG_FORMAT", "xml"),
            ("FEDIALT_WORKER", "maybe"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }

    #[test]
    fn postgres_needs_a_shared_secret_key() {
        let err = config(&[("DATABASE_URL", "postgres://u@h/db")]).unwrap_err();
        assert_eq!(err.variable, "FEDIALT_SECRET_KEY");
    }

    #[test]
    fn a_bad_redis_url_lists_every_accepted_form() {
        let err = config(&[("REDIS_URL", "http://x")])
            .unwrap_err()
            .to_string();
        for form in ["redis://", "rediss://", "unix://", "none"] {
            assert!(err.contains(form), "{form}: {err}");
        }
    }

    #[test]
    fn redis_parts_and_none() {
        let c = config(&[
            ("REDIS_HOST", "cache"),
            ("REDIS_PORT", "6380"),
            ("REDIS_PASSWORD", "p@ss"),
            ("REDIS_SSL", "true"),
        ])
        .unwrap();
        assert_eq!(
            c.redis.url.unwrap().expose(),
            "rediss://:p%40ss@cache:6380/0"
        );
        assert!(config(&[("REDIS_URL", "none")])
            .unwrap()
            .redis
            .url
            .is_none());
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let c = config(&[("CAPTION_API_KEY", "sk-verysecretvalue")]).unwrap();
        assert!(!format!("{c:?}").contains("verysecretvalue"));
    }

    #[test]
    fn trusted_proxy_networks() {
        let p = parse_proxy("10.1.0.0/16").unwrap();
        assert!(p.contains("10.1.200.3".parse().unwrap()));
        assert!(!p.contains("10.2.0.1".parse().unwrap()));
        assert!(parse_proxy("::1").unwrap().contains("::1".parse().unwrap()));
    }
}
