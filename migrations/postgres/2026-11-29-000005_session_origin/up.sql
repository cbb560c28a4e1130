-- The address a session signed in from, shown on /account beside its browser (user_agent) so a
-- person can tell their sessions apart.
ALTER TABLE sessions ADD COLUMN signed_in_from TEXT;
