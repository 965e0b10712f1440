-- The governance log: every governed change (grants, API keys, approver
-- keys, policies, the address book, prices, wallet tiers) as one record,
-- hash-chained, with the admins' signed votes that made a quorum and a MAC
-- under a key derived from the keystore root. The governed tables are its
-- projection; the server decides from the verified log.
CREATE TABLE governance_log (
    seq       BIGINT PRIMARY KEY CHECK (seq >= 1),
    time_ms   BIGINT NOT NULL,
    authority TEXT   NOT NULL CHECK (authority IN ('bootstrap', 'console', 'key-holder', 'quorum')),
    actor     TEXT   NOT NULL,
    content   TEXT   NOT NULL,
    approvals TEXT   NOT NULL,
    prev_hash TEXT   NOT NULL CHECK (length(prev_hash) = 64),
    hash      TEXT   NOT NULL UNIQUE CHECK (length(hash) = 64),
    mac       TEXT   CHECK (mac IS NULL OR length(mac) = 64)
);
CREATE TABLE governance_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO governance_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION governance_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'governance_log is append-only';
END;
$$;
CREATE TRIGGER governance_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON governance_log
FOR EACH STATEMENT EXECUTE FUNCTION governance_log_append_only();

-- A proposal is signed over the log head it was made on; a vote carries
-- the admin's key and signature.
ALTER TABLE proposals ADD COLUMN base_seq BIGINT;
ALTER TABLE proposals ADD COLUMN base_hash TEXT;
ALTER TABLE proposal_votes ADD COLUMN public_key TEXT;
ALTER TABLE proposal_votes ADD COLUMN signature TEXT;
-- Open proposals made before votes were signed cannot be signed now.
UPDATE proposals SET state = 'expired' WHERE state = 'open';

-- The governance anchors in the audit log, found by action.
CREATE INDEX audit_log_action ON audit_log (action, seq);
