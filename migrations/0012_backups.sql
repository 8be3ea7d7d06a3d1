-- The logical backups `python -m server backup` made: one row per backup whose dump and
-- manifest were written, so every replica can export the newest one's time
-- (hotpath_backup_last_success_timestamp_seconds) and Prometheus alert when backups stop.
-- The dump itself lives outside the database (docs/disaster-recovery.md).
CREATE TABLE backups (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CONSTRAINT backups_kind_check CHECK (kind IN ('logical')),
    file_name text NOT NULL,
    size_bytes bigint NOT NULL CONSTRAINT backups_size_check CHECK (size_bytes > 0),
    sha256 text NOT NULL,
    schema_version integer NOT NULL,
    snapshot_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backups_finished_idx ON backups (finished_at);
