-- +goose Up
-- A random id per database. The workers put it in their Redis claim keys, so
-- "done" marks left in Redis by another database (a reset, a restore, a
-- second deployment sharing Redis) never make this one drop an event.
CREATE TABLE store_identity (
    id         text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO store_identity (id) VALUES (gen_random_uuid()::text);

-- +goose Down
DROP TABLE store_identity;
