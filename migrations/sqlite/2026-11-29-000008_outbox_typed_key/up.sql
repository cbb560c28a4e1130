-- An outbox row names its key as a kind and an id, so nothing parses a built key back.
ALTER TABLE cache_outbox RENAME TO cache_outbox_old;
CREATE TABLE cache_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    ident TEXT NOT NULL,
    min_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO cache_outbox (id, kind, ident, min_version, created_at)
SELECT id,
    CASE substr(cache_key, 1, instr(cache_key, ':') - 1)
        WHEN 'session' THEN 'session'
        WHEN 'platforms' THEN 'platform'
        WHEN 'settings' THEN 'settings'
        WHEN 'progress' THEN 'progress'
        ELSE 'throttle' END,
    substr(cache_key, instr(cache_key, ':') + 1),
    min_version, created_at
FROM cache_outbox_old;
DROP TABLE cache_outbox_old;
