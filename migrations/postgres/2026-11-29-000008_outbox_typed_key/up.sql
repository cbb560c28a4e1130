-- An outbox row names its key as a kind and an id, so nothing parses a built key back.
ALTER TABLE cache_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'throttle';
ALTER TABLE cache_outbox ADD COLUMN ident TEXT NOT NULL DEFAULT '';
UPDATE cache_outbox SET
    kind = CASE split_part(cache_key, ':', 1)
        WHEN 'session' THEN 'session'
        WHEN 'platforms' THEN 'platform'
        WHEN 'settings' THEN 'settings'
        WHEN 'progress' THEN 'progress'
        ELSE 'throttle' END,
    ident = substr(cache_key, strpos(cache_key, ':') + 1);
ALTER TABLE cache_outbox DROP COLUMN cache_key;
ALTER TABLE cache_outbox ALTER COLUMN kind DROP DEFAULT;
ALTER TABLE cache_outbox ALTER COLUMN ident DROP DEFAULT;
