DROP TABLE publish_jobs;
DROP INDEX caption_drafts_post;
DROP INDEX caption_drafts_platform_state;
ALTER TABLE caption_drafts DROP COLUMN published_at;
ALTER TABLE caption_drafts DROP COLUMN version;
