-- The sealed keystore: one row. The root key is never stored; it is split
-- into unseal shares. `current_kek` names the key-encryption key new keys
-- are wrapped under.
CREATE TABLE keystore (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    keystore_id   TEXT    NOT NULL,
    threshold     INTEGER NOT NULL CHECK (threshold >= 2),
    shares        INTEGER NOT NULL CHECK (shares >= threshold),
    current_kek   INTEGER NOT NULL CHECK (current_kek >= 1),
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT    NOT NULL
);

-- Key-encryption keys, each sealed under the root key (XChaCha20-Poly1305,
-- bound to keystore id and version). Old versions stay until no key is
-- wrapped under them, so a rotation interrupted anywhere leaves every key
-- readable.
CREATE TABLE keystore_keks (
    version       INTEGER PRIMARY KEY CHECK (version >= 1),
    sealed        BYTEA  NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- The key inventory. Material of keystore keys is sealed under its own data
-- key, which is sealed under the KEK; HSM keys keep only their token reference.
CREATE TABLE keys (
    id              TEXT    PRIMARY KEY,
    version         INTEGER NOT NULL CHECK (version >= 1),
    purpose         TEXT    NOT NULL,
    algorithm       TEXT    NOT NULL,
    backend         TEXT    NOT NULL,
    backend_ref     TEXT,
    state           TEXT    NOT NULL,
    public_key      TEXT    NOT NULL,
    provenance      TEXT    NOT NULL,
    kek_version     INTEGER,
    dek_sealed      BYTEA,
    material_sealed BYTEA,
    created_at_ms   BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL
);
