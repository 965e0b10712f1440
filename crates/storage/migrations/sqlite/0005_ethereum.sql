-- Ethereum sending addresses: a transfer-signing key on one network.
-- `first_nonce` is the chain's nonce when Strongroom first used the address.
CREATE TABLE eth_senders (
    network       TEXT    NOT NULL,
    address       TEXT    NOT NULL,
    key_id        TEXT    NOT NULL REFERENCES keys (id),
    first_nonce   INTEGER NOT NULL CHECK (first_nonce >= 0),
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    PRIMARY KEY (network, address)
) STRICT;

-- One row per nonce handed out. The unique key means a nonce is never given
-- twice; allocation as max + 1 under the sender's lock means none is skipped.
CREATE TABLE eth_sends (
    id               TEXT    PRIMARY KEY,
    network          TEXT    NOT NULL,
    address          TEXT    NOT NULL,
    nonce            INTEGER NOT NULL CHECK (nonce >= 0),
    asset            TEXT    NOT NULL,
    recipient        TEXT    NOT NULL,
    amount           TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    included_attempt INTEGER,
    block_number     INTEGER,
    block_hash       TEXT,
    created_at_ms    INTEGER NOT NULL,
    created_by       TEXT    NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    UNIQUE (network, address, nonce),
    FOREIGN KEY (network, address) REFERENCES eth_senders (network, address)
) STRICT;

-- Every transaction signed for a send: the original, speed-ups and a
-- cancel, all with the send's nonce. The row (and its signing hash) is
-- written before the key signs; the signed bytes after, and they are
-- broadcast unchanged from then on.
CREATE TABLE eth_attempts (
    send_id                  TEXT    NOT NULL REFERENCES eth_sends (id),
    attempt                  INTEGER NOT NULL CHECK (attempt >= 1),
    kind                     TEXT    NOT NULL,
    to_address               TEXT    NOT NULL,
    value                    TEXT    NOT NULL,
    data                     BLOB    NOT NULL,
    gas_limit                INTEGER NOT NULL,
    legacy                   INTEGER NOT NULL CHECK (legacy IN (0, 1)),
    max_fee_per_gas          TEXT    NOT NULL,
    max_priority_fee_per_gas TEXT    NOT NULL,
    signing_hash             TEXT    NOT NULL,
    raw                      BLOB,
    tx_hash                  TEXT    UNIQUE,
    state                    TEXT    NOT NULL,
    created_at_ms            INTEGER NOT NULL,
    PRIMARY KEY (send_id, attempt)
) STRICT;

CREATE INDEX eth_sends_open ON eth_sends (network, state);
