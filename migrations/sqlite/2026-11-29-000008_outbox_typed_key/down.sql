ALTER TABLE cache_outbox RENAME TO cache_outbox_new;
CREATE TABLE cache_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_key TEXT NOT NULL,
    min_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO cache_outbox (id, cache_key, min_version, created_at)
SELECT id, (CASE kind WHEN 'platform' THEN 'platforms' ELSE kind END) || ':' || ident, min_version, created_at
FROM cache_outbox_new;
DROP TABLE cache_outbox_new;
