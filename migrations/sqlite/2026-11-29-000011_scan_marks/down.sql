DROP TABLE scan_marks;
