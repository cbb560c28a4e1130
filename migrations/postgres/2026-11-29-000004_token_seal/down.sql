ALTER TABLE platform_connections DROP COLUMN token_seal;
