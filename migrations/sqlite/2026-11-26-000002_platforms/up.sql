-- Bumped in the same transaction as any change to a person's connections: the version of the
-- cached list of them.
ALTER TABLE users ADD COLUMN platforms_version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE platform_connections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    instance_url TEXT NOT NULL,
    platform_type TEXT NOT NULL CHECK (platform_type IN ('mastodon', 'pixelfed')),
    account_id TEXT NOT NULL,
    account_username TEXT NOT NULL,
    display_name TEXT NOT NULL,
    -- XChaCha20-Poly1305 with the derived token key: base64(nonce || ciphertext).
    access_token_enc TEXT NOT NULL,
    refresh_token_enc TEXT,
    description_limit INTEGER NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    needs_reauth BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (user_id, instance_url, account_id)
);
CREATE INDEX platform_connections_user_id ON platform_connections (user_id);

-- The OAuth app fedialt registered on each instance, per redirect URI.
CREATE TABLE oauth_apps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_url TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scopes TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret_enc TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (instance_url, redirect_uri, scopes)
);
