DROP TABLE post_jobs;
DROP TABLE watches;
