-- Passkeys people sign in with (a second factor after the password): a
-- WebAuthn credential's id and P-256 key (SEC1 compressed, hex), and the
-- authenticator's signature counter as last seen (0 for synced passkeys,
-- which keep none). Not governed: each person adds and removes their own.
CREATE TABLE passkeys (
    credential_id    TEXT    PRIMARY KEY,
    user_id          TEXT    NOT NULL REFERENCES users (id),
    public_key       TEXT    NOT NULL,
    sign_count       BIGINT  NOT NULL DEFAULT 0,
    created_at_ms    BIGINT  NOT NULL,
    last_used_at_ms  BIGINT
);
CREATE INDEX passkeys_user ON passkeys (user_id);
