ALTER TABLE caption_drafts DROP COLUMN auto_published;
DROP TABLE post_jobs;
DROP TABLE watches;
