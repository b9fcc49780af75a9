-- +goose Up
-- Retention deletes old events in small batches. The key of a deleted event
-- is kept here, without its payload, for the dedup window: a late copy of it
-- still counts as a duplicate. processed_at (Unix microseconds) is when the
-- event was stored; the key is forgotten once that is older than the window.
CREATE TABLE expired_keys (
    topic        TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (topic, event_id)
) WITHOUT ROWID;
CREATE INDEX expired_keys_processed_at ON expired_keys (processed_at);

-- Events deleted by retention, per topic, changed in the deleting
-- transaction: alive rows = unique_processed - deleted.
CREATE TABLE deleted_events (
    topic  TEXT    PRIMARY KEY,
    events INTEGER NOT NULL
);

-- +goose Down
DROP TABLE deleted_events;
DROP TABLE expired_keys;
