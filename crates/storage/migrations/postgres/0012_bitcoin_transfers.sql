-- Bitcoin in wallets: the keys a wallet receives and spends with on a
-- network (a key belongs to one wallet), the wallet of each send, and the
-- send that carries out a transfer (one send may carry several: a batch).
CREATE TABLE btc_accounts (
    network       TEXT    NOT NULL,
    key_id        TEXT    NOT NULL REFERENCES keys (id),
    wallet_id     TEXT    NOT NULL REFERENCES wallets (id),
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (network, key_id)
);
CREATE INDEX btc_accounts_wallet ON btc_accounts (wallet_id, network);
CREATE INDEX btc_utxos_wallet ON btc_utxos (wallet_id, network, state);

ALTER TABLE btc_sends ADD COLUMN wallet_id TEXT REFERENCES wallets (id);
ALTER TABLE transfers ADD COLUMN btc_send_id TEXT REFERENCES btc_sends (id);
CREATE INDEX transfers_btc_send ON transfers (btc_send_id);

-- Transfers that had ended before the lifecycle's migration: when they did
-- (a transfer depending on one waits for its end).
UPDATE transfers SET finished_at_ms = updated_at_ms
    WHERE finished_at_ms IS NULL
    AND state IN ('completed', 'failed', 'cancelled', 'rejected', 'expired', 'blocked');

-- The queue is read highest priority first, then oldest: an index in that
-- order (0011's ascending one made every claim sort the whole queue).
DROP INDEX transfers_ready;
CREATE INDEX transfers_ready ON transfers (state, priority DESC, created_at_ms, id);
