-- Safe retries of transfer requests: the client's own external id (unique
-- per initiator) and Idempotency-Key headers, each stored in the same
-- transaction as the transfer it created. And the execution of approved
-- transfers: attempts, when the next may start (also the claim's lease),
-- and the last error.
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

ALTER TABLE transfers ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE transfers ADD COLUMN next_attempt_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE transfers ADD COLUMN last_error TEXT;
CREATE INDEX transfers_ready ON transfers (state, next_attempt_at_ms);
CREATE INDEX transfers_eth_send ON transfers (eth_send_id);
