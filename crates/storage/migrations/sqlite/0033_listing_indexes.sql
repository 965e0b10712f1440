-- Indexes for the transfer list's filters (`GET /v1/transfers`, newest
-- first: ordered by id, the page cursor), so that a page costs the same at
-- a million transfers as at a thousand: a wallet's, a state's, and a
-- wallet's in one state. The state and wallet-state indexes gain the id
-- (what they served before they still serve); the wallet's by id is new
-- (the one by creation time serves the limit windows).
DROP INDEX transfers_state;
CREATE INDEX transfers_state ON transfers (state, id);
DROP INDEX transfers_wallet_state;
CREATE INDEX transfers_wallet_state ON transfers (wallet_id, state, id);
CREATE INDEX transfers_wallet_id ON transfers (wallet_id, id);
