-- +goose Up
-- The all-in-one has no Kafka: no batch carries an offset, so there is none to
-- keep (Persist refuses a batch with one). Only the Postgres store keeps them.
DROP TABLE offsets;

-- +goose Down
CREATE TABLE offsets (
    topic     TEXT    NOT NULL,
    partition INTEGER NOT NULL,
    next      INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
