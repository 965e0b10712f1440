-- Policy, governance, approvals and freezes.

-- A wallet's tier (how exposed its keys are), a fact for policy rules.
-- Wallets made before this migration are hot: the strictest assumption.
ALTER TABLE wallets ADD COLUMN tier TEXT NOT NULL DEFAULT 'hot';

-- Policy versions: the canonical JSON of each document, in force from its row on.
CREATE TABLE policies (
    version       BIGINT PRIMARY KEY,
    document      TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    proposal_id   TEXT,
    created_at_ms BIGINT NOT NULL
);

-- Changes that need the admin quorum.
CREATE TABLE proposals (
    id             TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    summary        TEXT    NOT NULL,
    proposed_by    TEXT    NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    state          TEXT    NOT NULL,
    decided_at_ms  BIGINT
);
CREATE INDEX proposals_state ON proposals (state, created_at_ms);

CREATE TABLE proposal_votes (
    proposal_id TEXT    NOT NULL REFERENCES proposals (id),
    voter       TEXT    NOT NULL,
    vote        TEXT    NOT NULL,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (proposal_id, voter)
);

-- Approvers' Ed25519 public keys (hex), registered through governance,
-- for a person (`user:<id>`) or an integrator (`api-key:<id>`).
CREATE TABLE approver_keys (
    principal         TEXT    NOT NULL,
    public_key       TEXT    NOT NULL UNIQUE,
    registered_at_ms BIGINT NOT NULL,
    revoked_at_ms    BIGINT,
    PRIMARY KEY (principal, public_key)
);
CREATE UNIQUE INDEX approver_keys_active ON approver_keys (principal) WHERE revoked_at_ms IS NULL;

-- The address book. An entry is usable from `usable_from_ms` (cooling-off).
CREATE TABLE whitelist (
    id             TEXT    PRIMARY KEY,
    network        TEXT    NOT NULL,
    address        TEXT    NOT NULL,
    label          TEXT    NOT NULL,
    address_group  TEXT,
    usable_from_ms BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    removed_at_ms  BIGINT
);
CREATE UNIQUE INDEX whitelist_active ON whitelist (network, address) WHERE removed_at_ms IS NULL;

-- Freezes: `global`, `wallet:<id>` or `key:<id>`. In force until `released_at_ms`.
CREATE TABLE freezes (
    id               TEXT    PRIMARY KEY,
    scope            TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    frozen_by        TEXT    NOT NULL,
    frozen_at_ms     BIGINT NOT NULL,
    released_at_ms   BIGINT,
    release_proposal TEXT
);
CREATE INDEX freezes_scope ON freezes (scope, released_at_ms);

-- Transfers as judged: the intent, the policy version and decision they
-- were judged under (pinned), and where they stand.
CREATE TABLE transfers (
    id             TEXT    PRIMARY KEY,
    wallet_id      TEXT    NOT NULL REFERENCES wallets (id),
    initiator      TEXT    NOT NULL,
    asset          TEXT    NOT NULL,
    amount         TEXT    NOT NULL,
    destination    TEXT    NOT NULL,
    intent         BYTEA    NOT NULL,
    digest         TEXT    NOT NULL,
    policy_version BIGINT NOT NULL,
    decision_id    TEXT    NOT NULL UNIQUE,
    decision       TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    usd_micro      TEXT,
    expires_at_ms  BIGINT,
    unlock_at_ms   BIGINT,
    eth_send_id    TEXT,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);
CREATE INDEX transfers_wallet ON transfers (wallet_id, created_at_ms);
CREATE INDEX transfers_initiator ON transfers (initiator, created_at_ms);
CREATE INDEX transfers_destination ON transfers (destination, created_at_ms);
CREATE INDEX transfers_state ON transfers (state);

CREATE TABLE transfer_approvals (
    transfer_id   TEXT    NOT NULL REFERENCES transfers (id),
    approver      TEXT    NOT NULL,
    public_key    TEXT    NOT NULL,
    vote          TEXT    NOT NULL,
    signature     TEXT    NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    at_ms         BIGINT NOT NULL,
    voided_at_ms  BIGINT,
    PRIMARY KEY (transfer_id, approver)
);
CREATE INDEX transfer_approvals_approver ON transfer_approvals (approver);

-- Prices kept by operators (dev and air-gapped sites): millionths of a
-- dollar per whole unit. A missing or stale price makes a USD rule deny.
CREATE TABLE prices (
    asset      TEXT   PRIMARY KEY,
    micro_usd  TEXT   NOT NULL,
    as_of_ms   BIGINT NOT NULL,
    set_by     TEXT   NOT NULL
);
