-- +goose Up
-- Keys and topics use the "C" collation: compared and sorted byte for byte
-- (the dedup key is bytes, /stats lists topics in byte order as SQLite does),
-- and the unique index skips locale-aware comparison on every insert.

-- seq is processing order and the cursor of GET /events.
CREATE TABLE events (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic        text COLLATE "C" NOT NULL,
    event_id     text COLLATE "C" NOT NULL,
    ts           timestamptz NOT NULL,
    source       text NOT NULL,
    payload      json NOT NULL, -- json, not jsonb: the object is kept as received
    processed_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, event_id)
);
CREATE INDEX events_topic_seq ON events (topic, seq);

-- Counters change in the same transaction as the rows they count. One row per
-- (topic, partition): workers own distinct partitions, so never the same row.
CREATE TABLE counters (
    topic             text COLLATE "C" NOT NULL,
    partition         integer NOT NULL,
    received          bigint NOT NULL,
    unique_processed  bigint NOT NULL,
    duplicate_dropped bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- Consumed Kafka offsets, kept with the rows so each record counts once.
CREATE TABLE offsets (
    topic     text COLLATE "C" NOT NULL,
    partition integer NOT NULL,
    next      bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- +goose Down
DROP TABLE offsets;
DROP TABLE counters;
DROP TABLE events;
