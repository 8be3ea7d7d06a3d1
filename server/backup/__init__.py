"""Logical backups (pg_dump) with a manifest, their restore and its checks, retention, and the
metric that says when the newest one was made. The commands are server/commands/backup.py and
server/commands/restore.py; docs/disaster-recovery.md is the operator's side."""
