-- A cold wallet's send waits for its offline signature: the PSBT handed
-- out (with what the server signed) is kept in `psbt`, and the time it was
-- first handed out here.
ALTER TABLE btc_sends ADD COLUMN exported_at_ms BIGINT;
