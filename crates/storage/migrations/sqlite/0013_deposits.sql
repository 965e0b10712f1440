-- Deposits seen paying our Ethereum addresses: ether carried by a
-- transaction (log_index -1) or an ERC-20 Transfer event; credited once at
-- the network's confirmation depth, or found reorganised away. And how far
-- each network's blocks have been scanned for them.
CREATE TABLE eth_deposits (
    network        TEXT    NOT NULL,
    tx_hash        TEXT    NOT NULL,
    log_index      INTEGER NOT NULL,
    address        TEXT    NOT NULL,
    wallet_id      TEXT    REFERENCES wallets (id),
    from_address   TEXT    NOT NULL,
    asset          TEXT    NOT NULL,
    amount         TEXT    NOT NULL,
    block_number   INTEGER NOT NULL,
    block_hash     TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('seen', 'credited', 'reorged')),
    seen_at_ms     INTEGER NOT NULL,
    credited_at_ms INTEGER,
    PRIMARY KEY (network, tx_hash, log_index)
) STRICT;
CREATE INDEX eth_deposits_wallet ON eth_deposits (wallet_id, state);
CREATE INDEX eth_deposits_open ON eth_deposits (network, state, block_number);

CREATE TABLE eth_scan (
    network    TEXT    PRIMARY KEY,
    next_block INTEGER NOT NULL
) STRICT;
