-- The transfer lifecycle as the `lifecycle` crate names it: `approved`
-- becomes `queued`; `submitted` becomes the state of the send carrying it
-- (signing, signed, broadcasting, confirming).
UPDATE transfers SET state = 'queued' WHERE state = 'approved';
UPDATE transfers SET state = COALESCE((
    SELECT CASE s.state
        WHEN 'signed' THEN 'signed'
        WHEN 'broadcast' THEN 'broadcasting'
        WHEN 'included' THEN 'confirming'
        WHEN 'confirmed' THEN 'completed'
        WHEN 'cancelled' THEN 'cancelled'
        WHEN 'reverted' THEN 'failed'
        WHEN 'nonce_taken' THEN 'failed'
        ELSE 'signing' END
    FROM eth_sends s WHERE s.id = transfers.eth_send_id), 'signing')
WHERE state = 'submitted';

-- The queue: priority (higher first), a transfer this one waits for, a
-- hold for a person (no automatic retry), and when it ended.
ALTER TABLE transfers ADD COLUMN priority INTEGER NOT NULL DEFAULT 1;
ALTER TABLE transfers ADD COLUMN depends_on TEXT REFERENCES transfers (id);
ALTER TABLE transfers ADD COLUMN held_at_ms INTEGER;
ALTER TABLE transfers ADD COLUMN finished_at_ms INTEGER;
DROP INDEX transfers_ready;
CREATE INDEX transfers_ready ON transfers (state, priority, created_at_ms);
CREATE INDEX transfers_depends_on ON transfers (depends_on);

-- Every state a transfer passed through, when, by whom and why.
CREATE TABLE transfer_history (
    transfer_id TEXT    NOT NULL REFERENCES transfers (id),
    seq         INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    why         TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL,
    PRIMARY KEY (transfer_id, seq)
) STRICT;
INSERT INTO transfer_history (transfer_id, seq, state, actor, why, at_ms)
    SELECT id, 1, state, 'system', 'state when the history began', updated_at_ms FROM transfers;
