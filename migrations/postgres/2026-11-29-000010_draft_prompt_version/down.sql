ALTER TABLE caption_drafts DROP COLUMN prompt_version;
