-- Indexes for reads made inside transfers' write transactions, which on
-- SQLite hold the single write lock: a wallet's outflows (transfers not
-- yet finished) and the highest block of a sender's finished sends. Both
-- used to scan every transfer or send the wallet or sender ever made.
CREATE INDEX transfers_wallet_state ON transfers (wallet_id, state);
CREATE INDEX eth_sends_sender_state ON eth_sends (network, address, state, block_number);
