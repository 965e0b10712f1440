-- The Bitcoin watcher's view of each network's best chain: the blocks it
-- scanned, by height. Their hashes find a reorganisation and where it forked.
CREATE TABLE btc_blocks (
    network       TEXT    NOT NULL,
    height        INTEGER  NOT NULL CHECK (height >= 0),
    hash          TEXT    NOT NULL,
    prev_hash     TEXT    NOT NULL,
    scanned_at_ms INTEGER  NOT NULL,
    PRIMARY KEY (network, height)
) STRICT;

-- A Bitcoin send's block, once the watcher found it there.
ALTER TABLE btc_sends ADD COLUMN block_height INTEGER;
ALTER TABLE btc_sends ADD COLUMN block_hash TEXT;

-- The ledger: one row per movement of a wallet's funds (a deposit seen,
-- credited or reorganised away; a transfer's reservation, its release, its
-- payout; a fee), written in the transaction of the change that causes it.
-- Amounts are base units as decimal text: the deltas signed, and each row
-- carries the wallet's balances of that asset after it (its history).
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    wallet_id    TEXT    NOT NULL REFERENCES wallets (id),
    asset        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    d_available  TEXT    NOT NULL,
    d_pending    TEXT    NOT NULL,
    d_reserved   TEXT    NOT NULL,
    available    TEXT    NOT NULL,
    pending      TEXT    NOT NULL,
    reserved     TEXT    NOT NULL,
    transfer_id  TEXT,
    txid         TEXT,
    block        INTEGER,
    -- What caused it, once: a movement is never written twice.
    reference    TEXT    NOT NULL UNIQUE,
    at_ms        INTEGER  NOT NULL
) STRICT;
CREATE INDEX ledger_wallet_asset ON ledger (wallet_id, asset, seq);
CREATE INDEX ledger_wallet_time ON ledger (wallet_id, at_ms, seq);

-- Each wallet's current balances per asset: the last ledger row's.
CREATE TABLE ledger_balances (
    wallet_id TEXT    NOT NULL REFERENCES wallets (id),
    asset     TEXT    NOT NULL,
    available TEXT    NOT NULL,
    pending   TEXT    NOT NULL,
    reserved  TEXT    NOT NULL,
    seq       INTEGER  NOT NULL,
    PRIMARY KEY (wallet_id, asset)
) STRICT;
