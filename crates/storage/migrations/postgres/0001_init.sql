-- The audit log: append-only, hash-chained. Hashes are lower-case hex.
CREATE TABLE audit_log (
    seq       BIGINT  PRIMARY KEY CHECK (seq >= 1),
    version   INTEGER NOT NULL,
    time_ms   BIGINT  NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    details   TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL UNIQUE
);

-- The chain head: one row, updated with every append. Appends lock it
-- (SELECT … FOR UPDATE), which orders them across server instances; it is
-- also a second witness of the log's length.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE accounts (
    id            TEXT   PRIMARY KEY,
    name          TEXT   NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT   NOT NULL
);
