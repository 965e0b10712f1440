-- Who holds a webhook delivery's lease: a server's instance id, cleared
-- when the delivery is recorded. A restarted server takes back its own
-- leases at once, so a delivery a crash interrupted goes out again (with
-- the same webhook-id) without waiting for the lease to lapse.
ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;
