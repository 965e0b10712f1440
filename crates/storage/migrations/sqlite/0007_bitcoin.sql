-- Bitcoin outputs Strongroom holds. An outpoint is one row; reserving it
-- for a transfer is a compare-and-set on `state`, so two transfers can
-- never both select it, whichever server they run on.
CREATE TABLE btc_utxos (
    network          TEXT    NOT NULL,
    txid             TEXT    NOT NULL,
    vout             INTEGER NOT NULL CHECK (vout >= 0),
    value_sat        INTEGER NOT NULL CHECK (value_sat > 0),
    script_pubkey    TEXT    NOT NULL,
    spend            TEXT    NOT NULL,
    wallet_id        TEXT    REFERENCES wallets (id),
    state            TEXT    NOT NULL CHECK (state IN ('available', 'reserved', 'spent')),
    reserved_by      TEXT,
    reserved_until_ms INTEGER,
    created_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (network, txid, vout)
) STRICT;
CREATE INDEX btc_utxos_available ON btc_utxos (network, state);
