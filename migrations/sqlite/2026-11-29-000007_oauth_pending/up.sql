-- OAuth connections started and not yet answered: the state's hash, taken out (deleted) by the
-- first answer, so a state is good once however many requests race with it.
CREATE TABLE oauth_pending (
    state_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
