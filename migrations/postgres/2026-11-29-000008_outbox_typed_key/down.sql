ALTER TABLE cache_outbox ADD COLUMN cache_key TEXT NOT NULL DEFAULT '';
UPDATE cache_outbox SET cache_key = (CASE kind WHEN 'platform' THEN 'platforms' ELSE kind END) || ':' || ident;
ALTER TABLE cache_outbox ALTER COLUMN cache_key DROP DEFAULT;
ALTER TABLE cache_outbox DROP COLUMN kind;
ALTER TABLE cache_outbox DROP COLUMN ident;
