-- +goose Up
-- seq is taken at insert time but concurrent transactions commit in any
-- order, so a reader paging by seq alone could pass a row that commits later.
-- txid is the writing transaction (the same for every row of a batch): reads
-- serve only transactions older than every running one, in (txid, seq) order,
-- so no row can later appear before a position already returned.
-- Rows stored before this change are committed: they get 0 and keep seq order.
-- A constant default adds the column without rewriting the table.
ALTER TABLE events ADD COLUMN txid xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
CREATE INDEX events_txid_seq ON events (txid, seq);
CREATE INDEX events_topic_txid_seq ON events (topic, txid, seq);
-- Reads no longer order by seq alone.
DROP INDEX events_topic_seq;

-- +goose Down
CREATE INDEX events_topic_seq ON events (topic, seq);
DROP INDEX events_topic_txid_seq;
DROP INDEX events_txid_seq;
ALTER TABLE events DROP COLUMN txid;
