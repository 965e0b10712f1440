-- Restores: each opens an epoch of the installation. Until the chains have
-- been consulted (`reconciled_at_ms`), the restore's global freeze holds
-- every signature and broadcast; the reconciliation ends that freeze itself
-- and freezes, for a person, only what the chains leave unsettled.
CREATE TABLE recoveries (
    id               TEXT    PRIMARY KEY,
    restored_at_ms   BIGINT NOT NULL,
    from_audit_seq   BIGINT NOT NULL,
    manifest_sha256  TEXT    NOT NULL,
    freeze_id        TEXT    NOT NULL REFERENCES freezes (id),
    reconciled_at_ms BIGINT,
    report           TEXT
);
