-- +goose Up
-- GET /events pages in commit order. A batch that stored rows takes a
-- transaction-scoped advisory lock as its last statement before COMMIT and
-- numbers its commit from a sequence while holding it: a commit visible to a
-- reader therefore has a smaller pos than every commit still to come, and a
-- reader needs no cluster-wide horizon (pg_snapshot_xmin), which any long
-- transaction anywhere in the cluster would hold back.
CREATE SEQUENCE event_commit_pos AS bigint;
CREATE TABLE event_commits (
    pos  bigint PRIMARY KEY,
    txid xid8 NOT NULL UNIQUE -- events.txid of the rows the commit stored
);
-- Rows stored before: one commit per writing transaction, numbered by its
-- txid, so the (txid, seq) cursors handed out until now go on unchanged.
INSERT INTO event_commits (pos, txid)
SELECT DISTINCT txid::text::bigint, txid FROM events;
-- New commits number after every txid handed out in a cursor so far.
SELECT setval('event_commit_pos', pg_current_xact_id()::text::bigint);

-- +goose Down
DROP TABLE event_commits;
DROP SEQUENCE event_commit_pos;
