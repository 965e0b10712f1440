-- Bitcoin outputs Strongroom holds. An outpoint is one row; reserving it
-- for a transfer is a compare-and-set on `state`, so two transfers can
-- never both select it, whichever server they run on.
CREATE TABLE btc_utxos (
    network          TEXT    NOT NULL,
    txid             TEXT    NOT NULL,
    vout             BIGINT NOT NULL CHECK (vout >= 0),
    value_sat        BIGINT NOT NULL CHECK (value_sat > 0),
    script_pubkey    TEXT    NOT NULL,
    spend            TEXT    NOT NULL,
    wallet_id        TEXT    REFERENCES wallets (id),
    state            TEXT    NOT NULL CHECK (state IN ('available', 'reserved', 'spent')),
    reserved_by      TEXT,
    reserved_until_ms BIGINT,
    created_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (network, txid, vout)
);
CREATE INDEX btc_utxos_available ON btc_utxos (network, state);
