-- Who holds a queued transfer's claim (its lease on next_attempt_at_ms):
-- a server's instance id, cleared by every transition. A restarted server
-- takes back its own claims at once instead of waiting for them to lapse.
ALTER TABLE transfers ADD COLUMN claimed_by TEXT;
