DROP TABLE caption_settings;
