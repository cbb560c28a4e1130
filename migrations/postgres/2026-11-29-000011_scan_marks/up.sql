-- How far runs of a connection have read without a gap: the posts from `oldest` to `newest` (ids)
-- have all been looked at. A run reads the posts newer than `newest`, then goes on below `oldest`,
-- so successive runs reach older posts whatever lies at the top of the timeline.
CREATE TABLE scan_marks (
    platform_id BIGINT PRIMARY KEY REFERENCES platform_connections (id) ON DELETE CASCADE,
    newest TEXT NOT NULL,
    oldest TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
