-- Broadcasts in flight, ordered with freezes: a broadcast registers here
-- (under the shared freeze lock, after reading the freezes) before its
-- bytes go to a node, and records its outcome after. A freeze (under the
-- exclusive lock) sees every broadcast that started before it, waits for
-- them, and lists those that may have reached the network.
CREATE TABLE broadcasts (
    id            TEXT   PRIMARY KEY,
    send          TEXT   NOT NULL,
    wallet_id     TEXT,
    key_id        TEXT,
    started_at_ms BIGINT NOT NULL,
    ended_at_ms   BIGINT,
    outcome       TEXT   CHECK (outcome IN ('sent', 'unknown', 'refused'))
);
CREATE INDEX broadcasts_in_flight ON broadcasts (ended_at_ms, started_at_ms);

-- The tags of the unseal shares issued (SHA-256 of each share's bytes
-- under a domain label): a sealed server refuses a share it never issued
-- before it touches the reconstruction. Written with the keystore.
CREATE TABLE keystore_share_tags (
    idx INTEGER PRIMARY KEY CHECK (idx BETWEEN 1 AND 255),
    tag TEXT    NOT NULL CHECK (length(tag) = 64)
);
