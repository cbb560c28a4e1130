-- Bumped whenever what proves who someone is changes (a new password). A session is created only
-- for the version its sign-in checked, in the same transaction, so a sign-in that checked the
-- old password cannot outlive a change made while it ran.
ALTER TABLE users ADD COLUMN credentials_version BIGINT NOT NULL DEFAULT 1;
