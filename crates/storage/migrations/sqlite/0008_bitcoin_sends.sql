-- Bitcoin sends: the approved PSBT (unsigned) is stored with its inputs'
-- reservation before any key signs; the signed transaction after.
CREATE TABLE btc_sends (
    id            TEXT    PRIMARY KEY,
    network       TEXT    NOT NULL,
    psbt          BLOB    NOT NULL,
    raw           BLOB,
    txid          TEXT    UNIQUE,
    fee_sat       INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL
) STRICT;
