-- A network's first fee caps and endpoints are recorded in the governance
-- log by the server itself, from its configuration, at an unseal (authority
-- 'configuration', MAC'd; replay accepts one only while the log holds none
-- for that network).
ALTER TABLE governance_log DROP CONSTRAINT governance_log_authority_check;
ALTER TABLE governance_log ADD CONSTRAINT governance_log_authority_check
    CHECK (authority IN ('bootstrap', 'console', 'key-holder', 'quorum', 'configuration'));
