-- Rotation of a Bitcoin key with a sweep: the wallet's account on the old
-- key is retired (no change or deposit address goes to it any more) and
-- names the successor's address, the one place its outputs may be swept to.
ALTER TABLE btc_accounts ADD COLUMN retired_at_ms BIGINT;
ALTER TABLE btc_accounts ADD COLUMN successor_address TEXT;
