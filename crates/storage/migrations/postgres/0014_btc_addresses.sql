-- Addresses issued from a wallet's HD account keys: receive (chain 0,
-- handed out for deposits, the next only once the last one was used) and
-- change (chain 1, one per transaction). Derived from the account's xpub
-- alone (watch-only); the keystore derives the same child to sign.
CREATE TABLE btc_addresses (
    network       TEXT    NOT NULL,
    key_id        TEXT    NOT NULL REFERENCES keys (id),
    chain         BIGINT NOT NULL CHECK (chain IN (0, 1)),
    idx           BIGINT NOT NULL CHECK (idx >= 0),
    address       TEXT    NOT NULL,
    script_pubkey TEXT    NOT NULL,
    wallet_id     TEXT    NOT NULL REFERENCES wallets (id),
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (network, key_id, chain, idx)
);
CREATE UNIQUE INDEX btc_addresses_address ON btc_addresses (network, address);
CREATE INDEX btc_addresses_wallet ON btc_addresses (wallet_id, network);
