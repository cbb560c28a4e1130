-- Watching a connection for new posts: the person's two settings (cached like the caption
-- settings, at `version`), what the watcher last saw (the status id it catches up from after any
-- gap, and the words the caption page shows), and the lease of the one worker watching it.
CREATE TABLE watches (
    platform_id BIGINT PRIMARY KEY REFERENCES platform_connections (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    enabled BOOLEAN NOT NULL DEFAULT FALSE,
    auto_publish BOOLEAN NOT NULL DEFAULT FALSE,
    -- When watching was last turned on (seconds).
    enabled_at BIGINT,
    -- The newest of the account's own posts the watcher has handled: it reads on after this one.
    last_status_id TEXT,
    last_status_url TEXT,
    -- When the last new post was seen (seconds).
    last_post_at BIGINT,
    -- 'stream' or 'poll': how the account is watched now (NULL: not yet).
    mode TEXT,
    -- What stops or troubles the watching, in words for people (NULL: nothing).
    problem TEXT,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    version BIGINT NOT NULL DEFAULT 1,
    updated_at BIGINT NOT NULL
);
CREATE INDEX watches_enabled ON watches (enabled, lease_until_ms);

-- A new post a watcher found: a small job on the worker's queue (claimed under a lease like runs
-- and publishing). One per post: the same post found twice (a stream and a catch-up) is one job.
CREATE TABLE post_jobs (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform_id BIGINT NOT NULL REFERENCES platform_connections (id) ON DELETE CASCADE,
    status_id TEXT NOT NULL,
    -- The post as the instance sent it (JSON of what fedialt reads of a status).
    status_json TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    run_after BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (platform_id, status_id)
);
CREATE INDEX post_jobs_due ON post_jobs (state, run_after);

-- A draft approved by fedialt itself for a connection that publishes without review (shown, so
-- the person knows which descriptions nobody read first).
ALTER TABLE caption_drafts ADD COLUMN auto_published BOOLEAN NOT NULL DEFAULT FALSE;
