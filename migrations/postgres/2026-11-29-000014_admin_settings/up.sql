-- System-wide settings admins save, by name (caption_defaults: the caption settings of every
-- connection without its own, as JSON). Every save bumps the version (the cached copy's).
CREATE TABLE admin_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
