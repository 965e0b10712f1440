-- No key without a backup: a key receives funds (deposit addresses are
-- issued for it) only once a verified backup holds it, or an operator
-- accepted the risk for it (audited).
ALTER TABLE keys ADD COLUMN backed_up_at_ms INTEGER;
ALTER TABLE keys ADD COLUMN backup_waived_by TEXT;
