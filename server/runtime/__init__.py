"""The process: settings and their readers, logs, the metrics registry, background tasks, the
Redis link and pub/sub, files and paths, mail."""
