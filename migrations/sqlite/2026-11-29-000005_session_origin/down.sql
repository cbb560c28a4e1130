ALTER TABLE sessions DROP COLUMN signed_in_from;
