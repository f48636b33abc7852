-- Run once by the mysql image on first start (as root, after MYSQL_USER was created).
-- Lets the app user create/drop throwaway test databases such as imgsearch_test_xxx.
GRANT ALL PRIVILEGES ON `imgsearch\_%`.* TO 'imgsearch'@'%';
FLUSH PRIVILEGES;
