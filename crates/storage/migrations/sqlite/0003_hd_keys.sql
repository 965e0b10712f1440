-- HD keys: the BIP-32 account path below which this key's seed derives.
-- NULL for single keys.
ALTER TABLE keys ADD COLUMN hd_path TEXT;
