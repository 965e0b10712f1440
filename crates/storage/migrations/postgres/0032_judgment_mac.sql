-- The authenticator of a transfer's judgment: HMAC-SHA256, under a key
-- derived from the keystore root, of what was judged (the transfer's id,
-- wallet, initiator, asset, amount, destination, intent and digest, the
-- policy version, the decision and its id, the time). Checked before any
-- key signs for the transfer or its transaction is handed out: a judgment
-- rewritten in the database (an allowed transfer's destination, a decision
-- turned to allow) is refused and its wallet frozen. NULL: judged before
-- this schema; the first unsealed server authenticates those still open
-- against their `transfer.judged` audit records, once.
ALTER TABLE transfers ADD COLUMN judgment_mac TEXT;
