-- Auto-unseal: the root key wrapped under an HSM key (AES-GCM in the token).
ALTER TABLE keystore ADD COLUMN auto_unseal_ref TEXT;
ALTER TABLE keystore ADD COLUMN auto_unseal_sealed BYTEA;
