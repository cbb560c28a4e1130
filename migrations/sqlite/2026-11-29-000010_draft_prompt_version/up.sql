-- Which wording of the prompt made a draft (captioning::prompt::VERSION), beside its model.
ALTER TABLE caption_drafts ADD COLUMN prompt_version INTEGER NOT NULL DEFAULT 0;
