-- A caption run is a row here: the job (claimed with a lease a worker renews) and its progress.
CREATE TABLE caption_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform_id BIGINT NOT NULL REFERENCES platform_connections (id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    -- The caption settings as they were when the run was started (JSON).
    settings TEXT NOT NULL,
    posts_limit INTEGER NOT NULL,
    posts_scanned INTEGER NOT NULL DEFAULT 0,
    posts_seen INTEGER NOT NULL DEFAULT 0,
    images_found INTEGER NOT NULL DEFAULT 0,
    drafts_made INTEGER NOT NULL DEFAULT 0,
    media_skipped INTEGER NOT NULL DEFAULT 0,
    images_failed INTEGER NOT NULL DEFAULT 0,
    step TEXT NOT NULL DEFAULT '',
    error TEXT,
    -- The id of the newest post not yet finished is older than this one: a resumed run reads on
    -- from here (max_id).
    resume_after TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_after BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    version BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);
-- One active run per connection.
CREATE UNIQUE INDEX caption_jobs_one_active ON caption_jobs (platform_id) WHERE state IN ('queued', 'running');
CREATE INDEX caption_jobs_claim ON caption_jobs (state, run_after);
CREATE INDEX caption_jobs_user ON caption_jobs (user_id, id);

-- A drafted description for one image of one post; one per image and connection.
CREATE TABLE caption_drafts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT REFERENCES caption_jobs (id) ON DELETE SET NULL,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform_id BIGINT NOT NULL REFERENCES platform_connections (id) ON DELETE CASCADE,
    status_id TEXT NOT NULL,
    status_url TEXT NOT NULL,
    media_id TEXT NOT NULL,
    preview_url TEXT NOT NULL,
    image_url TEXT NOT NULL,
    post_text TEXT NOT NULL,
    language TEXT,
    alt_text TEXT NOT NULL,
    model TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'publishing', 'published', 'rejected',
        'generation_failed', 'publish_failed', 'already_described')),
    edited BOOLEAN NOT NULL DEFAULT FALSE,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (platform_id, media_id)
);
CREATE INDEX caption_drafts_run ON caption_drafts (run_id);
CREATE INDEX caption_drafts_user_state ON caption_drafts (user_id, state);
