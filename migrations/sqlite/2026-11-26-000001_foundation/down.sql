DROP TABLE cache_state;
DROP TABLE login_throttle;
DROP TABLE cache_outbox;
DROP TABLE sessions;
DROP TABLE users;
