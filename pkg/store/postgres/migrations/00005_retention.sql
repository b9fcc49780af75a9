-- +goose Up
-- Retention deletes old events in small batches. The key of a deleted event
-- is kept here, without its payload, for the dedup window: a late copy of it
-- still counts as a duplicate. processed_at is when the event was stored;
-- the key is forgotten once that is older than the window.
CREATE TABLE expired_keys (
    topic        text COLLATE "C" NOT NULL,
    event_id     text COLLATE "C" NOT NULL,
    processed_at timestamptz NOT NULL,
    PRIMARY KEY (topic, event_id)
);
CREATE INDEX expired_keys_processed_at ON expired_keys (processed_at);

-- Events deleted by retention, per topic, changed in the deleting
-- transaction: alive rows = unique_processed - deleted, exact and cheap.
CREATE TABLE deleted_events (
    topic  text COLLATE "C" PRIMARY KEY,
    events bigint NOT NULL
);

-- +goose Down
DROP TABLE deleted_events;
DROP TABLE expired_keys;
