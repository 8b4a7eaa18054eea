"""Off-site copies of the backup repository on an rclone remote: copy, list, verify, fetch, prune."""
