-- Key rotation with a sweep: a rotated (or compromised) key names its
-- successor; the wallet's Ethereum account on it is retired in favour of
-- the successor's (transfers leave from the current one), and the retired
-- one names where its funds are swept. A key that is no longer active signs
-- only such sweeps.
ALTER TABLE keys ADD COLUMN successor_id TEXT;
ALTER TABLE eth_senders ADD COLUMN retired_at_ms INTEGER;
ALTER TABLE eth_senders ADD COLUMN successor_address TEXT;
