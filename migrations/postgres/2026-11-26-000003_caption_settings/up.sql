-- A person's caption generation settings for one platform connection. No row: the system defaults.
CREATE TABLE caption_settings (
    platform_id BIGINT PRIMARY KEY REFERENCES platform_connections (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    max_posts_per_run INTEGER NOT NULL,
    max_caption_length INTEGER NOT NULL,
    optimal_min_length INTEGER NOT NULL,
    optimal_max_length INTEGER NOT NULL,
    reprocess_existing BOOLEAN NOT NULL,
    processing_delay_ms INTEGER NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
