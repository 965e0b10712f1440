-- A network's first fee caps and endpoints are recorded in the governance
-- log by the server itself, from its configuration, at an unseal (authority
-- 'configuration', MAC'd; replay accepts one only while the log holds none
-- for that network). SQLite changes a CHECK by rebuilding the table.
CREATE TABLE governance_log_next (
    seq       INTEGER PRIMARY KEY CHECK (seq >= 1),
    time_ms   INTEGER NOT NULL,
    authority TEXT   NOT NULL CHECK (authority IN ('bootstrap', 'console', 'key-holder', 'quorum', 'configuration')),
    actor     TEXT   NOT NULL,
    content   TEXT   NOT NULL,
    approvals TEXT   NOT NULL,
    prev_hash TEXT   NOT NULL CHECK (length(prev_hash) = 64),
    hash      TEXT   NOT NULL UNIQUE CHECK (length(hash) = 64),
    mac       TEXT   CHECK (mac IS NULL OR length(mac) = 64)
) STRICT;
INSERT INTO governance_log_next (seq, time_ms, authority, actor, content, approvals, prev_hash, hash, mac)
SELECT seq, time_ms, authority, actor, content, approvals, prev_hash, hash, mac FROM governance_log;
DROP TABLE governance_log;
ALTER TABLE governance_log_next RENAME TO governance_log;

CREATE TRIGGER governance_log_append_only_update BEFORE UPDATE ON governance_log
BEGIN SELECT RAISE(ABORT, 'governance_log is append-only'); END;
CREATE TRIGGER governance_log_append_only_delete BEFORE DELETE ON governance_log
BEGIN SELECT RAISE(ABORT, 'governance_log is append-only'); END;
