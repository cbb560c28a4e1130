-- Every change to a draft bumps its version: a change made from what someone saw (a regenerate, a
-- page's form) lands only when nothing changed in between. published_at: when it went out.
ALTER TABLE caption_drafts ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE caption_drafts ADD COLUMN published_at BIGINT;
CREATE INDEX caption_drafts_platform_state ON caption_drafts (platform_id, state, id);
CREATE INDEX caption_drafts_post ON caption_drafts (platform_id, status_id);

-- Publishing a post's approved drafts: one row per post, reused. Each approval bumps
-- `requested`; a worker that finishes records the `requested` it started from in `handled`, so
-- an approval that came in while it worked makes the row due again. Claimed under a lease like
-- caption runs.
CREATE TABLE publish_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform_id BIGINT NOT NULL REFERENCES platform_connections (id) ON DELETE CASCADE,
    status_id TEXT NOT NULL,
    requested BIGINT NOT NULL DEFAULT 1,
    handled BIGINT NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_after BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (platform_id, status_id)
);
CREATE INDEX publish_jobs_due ON publish_jobs (run_after) WHERE requested > handled;
