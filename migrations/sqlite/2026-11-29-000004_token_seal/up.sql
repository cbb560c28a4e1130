-- How a connection's tokens are sealed: 1 = bound to their purpose only (before this migration),
-- 2 = bound to their purpose, their row and their owner. Rows at 1 are re-sealed at start, when the
-- key is at hand (SQL cannot do it).
ALTER TABLE platform_connections ADD COLUMN token_seal INTEGER NOT NULL DEFAULT 1;
