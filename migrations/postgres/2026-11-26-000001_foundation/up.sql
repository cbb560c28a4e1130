CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT
);

-- id is the SHA-256 of the session key: the key itself (the cookie's secret) is never stored.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id BIGINT REFERENCES users (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    user_agent TEXT
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Cache invalidations that must reach Redis even if it was away when the change was made.
CREATE TABLE cache_outbox (
    id BIGSERIAL PRIMARY KEY,
    cache_key TEXT NOT NULL,
    min_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Sign-in failure counters, used when Redis is not there.
CREATE TABLE login_throttle (
    scope_key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_start BIGINT NOT NULL
);

-- The cache generation: bumped when Redis comes back as a different server (restart, restore),
-- so nothing written by an older server is ever trusted.
CREATE TABLE cache_state (
    id INTEGER PRIMARY KEY,
    generation BIGINT NOT NULL,
    redis_run_id TEXT
);
INSERT INTO cache_state (id, generation, redis_run_id) VALUES (1, 1, NULL);
