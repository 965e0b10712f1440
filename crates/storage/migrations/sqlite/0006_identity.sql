-- Wallets: a named group of addresses that grants can be scoped to.
CREATE TABLE wallets (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL
) STRICT;

-- Every Ethereum sender belongs to a wallet (registered after this migration).
ALTER TABLE eth_senders ADD COLUMN wallet_id TEXT REFERENCES wallets (id);

-- People. Passwords as Argon2id PHC strings; the TOTP secret sealed under
-- the keystore (so it is readable only while unsealed, like everything
-- else a session can reach).
CREATE TABLE users (
    id               TEXT    PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    password_hash    TEXT    NOT NULL,
    totp_sealed      BLOB,
    totp_pending     BLOB,
    totp_last_step   INTEGER NOT NULL DEFAULT 0,
    state            TEXT    NOT NULL,
    failed_logins    INTEGER NOT NULL DEFAULT 0,
    locked_until_ms  INTEGER NOT NULL DEFAULT 0,
    created_at_ms    INTEGER NOT NULL,
    created_by       TEXT    NOT NULL
) STRICT;

-- Roles held by users and API keys (`user:<id>`, `api-key:<id>`), at a scope.
CREATE TABLE grants (
    principal     TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    scope         TEXT    NOT NULL,
    expires_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    PRIMARY KEY (principal, role, scope)
) STRICT;

-- API keys: the Ed25519 public half only; the private half never reaches the server.
CREATE TABLE api_keys (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    public_key    TEXT    NOT NULL UNIQUE,
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL
) STRICT;

-- Nonces of signed requests, shared by every server: a replay hits the key.
CREATE TABLE request_nonces (
    key_id     TEXT    NOT NULL,
    nonce      TEXT    NOT NULL,
    seen_at_ms INTEGER NOT NULL,
    PRIMARY KEY (key_id, nonce)
) STRICT;
CREATE INDEX request_nonces_seen ON request_nonces (seen_at_ms);

-- Sessions: only hashes of the session token and of its CSRF token are kept.
CREATE TABLE sessions (
    token_hash    TEXT    PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id),
    csrf_hash     TEXT    NOT NULL,
    mfa           INTEGER NOT NULL CHECK (mfa IN (0, 1)),
    address       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
) STRICT;

-- Addresses each user has signed in from: a new one is flagged in the audit log.
CREATE TABLE login_addresses (
    user_id       TEXT    NOT NULL REFERENCES users (id),
    address       TEXT    NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, address)
) STRICT;

-- Webhook subscriptions; the signing secret sealed under the keystore.
CREATE TABLE webhooks (
    id            TEXT    PRIMARY KEY,
    url           TEXT    NOT NULL,
    events        TEXT    NOT NULL,
    secret_sealed BLOB    NOT NULL,
    active        INTEGER NOT NULL CHECK (active IN (0, 1)),
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL
) STRICT;

-- The outbox: events written in the transaction of the change they describe.
CREATE TABLE webhook_events (
    id            TEXT    PRIMARY KEY,
    event_type    TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- One delivery per (subscription, event), retried with backoff.
CREATE TABLE webhook_deliveries (
    id              TEXT    PRIMARY KEY,
    webhook_id      TEXT    NOT NULL REFERENCES webhooks (id),
    event_id        TEXT    NOT NULL REFERENCES webhook_events (id),
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    leased_until_ms INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    delivered_at_ms INTEGER,
    UNIQUE (webhook_id, event_id)
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_ms);
