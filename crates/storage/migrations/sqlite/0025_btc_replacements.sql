-- A Bitcoin send sped up by a BIP-125 replacement keeps what it replaced:
-- either transaction may still be mined, and the loop must know both.
CREATE TABLE btc_replaced (
    send_id        TEXT    NOT NULL REFERENCES btc_sends (id),
    txid           TEXT    NOT NULL UNIQUE,
    psbt           BLOB    NOT NULL,
    raw            BLOB    NOT NULL,
    fee_sat        INTEGER  NOT NULL CHECK (fee_sat >= 0),
    replaced_at_ms INTEGER  NOT NULL,
    PRIMARY KEY (send_id, txid)
) STRICT;

-- The tip when the loop first saw a broadcast send still unconfirmed: how
-- long it has waited.
ALTER TABLE btc_sends ADD COLUMN waiting_since_height INTEGER;
