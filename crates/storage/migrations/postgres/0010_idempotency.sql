-- Safe retries of transfer requests: the client's own external id (unique
-- per initiator) and Idempotency-Key headers, each stored in the same
-- transaction as the transfer it created.
ALTER TABLE transfers ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX transfers_external_id ON transfers (initiator, external_id)
    WHERE external_id IS NOT NULL;

CREATE TABLE idempotency_keys (
    principal     TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    request_hash  TEXT    NOT NULL,
    transfer_id   TEXT    NOT NULL REFERENCES transfers (id),
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
);
