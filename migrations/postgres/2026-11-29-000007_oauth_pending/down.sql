DROP TABLE oauth_pending;
