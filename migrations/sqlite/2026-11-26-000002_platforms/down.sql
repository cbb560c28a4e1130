DROP TABLE oauth_apps;
DROP TABLE platform_connections;
ALTER TABLE users DROP COLUMN platforms_version;
