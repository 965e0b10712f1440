-- Ethereum HD accounts (BIP-44 m/44'/60'/0'/0/i): a sender derived from an
-- HD key names its child index; a deposit address is a sender row of its
-- wallet with its own account id (a sweep's source, bound in the sweep's
-- intent) and, optionally, the label it was issued for (one per label
-- among those in use: a rotated key's are retired, still swept).
-- Transfers leave from the wallet's account sender (no deposit id).
ALTER TABLE eth_senders ADD COLUMN hd_index BIGINT;
ALTER TABLE eth_senders ADD COLUMN deposit_id TEXT;
ALTER TABLE eth_senders ADD COLUMN label TEXT;
CREATE UNIQUE INDEX eth_senders_deposit_id ON eth_senders (deposit_id);
CREATE UNIQUE INDEX eth_senders_label ON eth_senders (wallet_id, network, label)
    WHERE label IS NOT NULL AND retired_at_ms IS NULL;
CREATE UNIQUE INDEX eth_senders_hd_index ON eth_senders (network, key_id, hd_index)
    WHERE hd_index IS NOT NULL;
-- A deposit sweep's source account (its intent's account, copied for the
-- funds queries): it leaves from the deposit address, not the wallet's
-- account, so it is not one of the account's outflows.
ALTER TABLE transfers ADD COLUMN source_account TEXT;
CREATE INDEX transfers_source_account ON transfers (source_account)
    WHERE source_account IS NOT NULL;
