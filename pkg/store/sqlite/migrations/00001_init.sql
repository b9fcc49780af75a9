-- +goose Up
-- seq is the rowid: processing order, the cursor of GET /events.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,
    topic        TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    ts           INTEGER NOT NULL, -- Unix microseconds, UTC: years 0001-9999 fit
    source       TEXT    NOT NULL,
    payload      BLOB    NOT NULL, -- the JSON object as received
    processed_at INTEGER NOT NULL, -- Unix microseconds
    UNIQUE (topic, event_id)
);
CREATE INDEX events_topic_seq ON events (topic, seq);

-- Counters change in the same transaction as the rows they count.
CREATE TABLE counters (
    topic             TEXT    NOT NULL,
    shard             INTEGER NOT NULL,
    received          INTEGER NOT NULL,
    unique_processed  INTEGER NOT NULL,
    duplicate_dropped INTEGER NOT NULL,
    PRIMARY KEY (topic, shard)
);

-- Consumed offsets, kept with the rows so each record counts once.
CREATE TABLE offsets (
    topic     TEXT    NOT NULL,
    partition INTEGER NOT NULL,
    next      INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- +goose Down
DROP TABLE offsets;
DROP TABLE counters;
DROP TABLE events;
