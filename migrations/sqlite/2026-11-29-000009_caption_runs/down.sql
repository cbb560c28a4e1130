DROP TABLE caption_drafts;
DROP TABLE caption_jobs;
