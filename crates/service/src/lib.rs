//! The application: wires domain, policy, lifecycle, audit, storage, keys
//! and the chain crates; owns the clock; runs the workers (queue, watchers,
//! webhooks, checkpoints).
//!
//! HTTP, SQL and configuration files are someone else's business: the API
//! crate calls into [`Service`] (through the capabilities of `access`),
//! storage does the SQL, and the binary decides which backends to build it
//! with. Every state change commits with its audit record
//! (`Service::commit`) before any effect (signing, broadcast).
//!
//! ## Layers
//!
//! Modules import only from their own layer or below (`xtask` checks it,
//! and that no modules import each other in a circle), bottom first:
//!
//! 1. **core** — `service` (the [`Service`] handle: store, clock, the
//!    vault's lock, configured networks; `commit`), `error` (the errors
//!    callers tell apart), `record` (audit entries), `settings` (networks
//!    and governance as configured), `vault` (the keystore's state in
//!    memory, how sealed material opens, the `Permit` a signature needs),
//!    `freezes` (what a freeze covers, whether one is in force,
//!    placing one, ordered with every broadcast), `moves` (a transfer's states and its one way to move:
//!    `transition`, with its history line, webhook event and audit record;
//!    `decode_intent`; `classify` of an attempt's failure), `outbox`
//!    (webhook events written in the change's transaction), `access`
//!    (`Principal`, `Can<'_, P>`, `authorize`), `approvals` (whether a
//!    judged transfer's approvals still stand, each recorded approval
//!    verified again over the transfer as stored), `judgment` (a transfer's
//!    judgment authenticated when made and checked before planning and
//!    signing), `threshold` (the signer
//!    nodes as a key backend), `checkpoints` (signed checkpoints of the
//!    audit chain, `verify_audit`), `limiter` (bounded rate limits),
//!    `webhook_target` (where a webhook may be delivered), `changes` (what a
//!    governance proposal may change, and its checks), `gov_state` (the
//!    governance log replayed and verified: what every decision reads),
//!    `gov_log` (records appended with their change, the state kept at the
//!    log's head, forged rows raised and frozen), `audit_key`, `clock`,
//!    `crash`, `totp`, `ledger` (the movements written with each change:
//!    deposits, reservations, releases, payouts, fees), `refusal`
//!    (`refuse_to_sign`, the one refuse path: history, one audit record,
//!    webhook event, the wallet's freeze).
//! 2. **vault** — `backups` (backups and restores audited, keys a verified
//!    backup holds); `keystore`: init, unseal (Shamir shares), auto-unseal,
//!    seal, KEK rotation, and `sign_checked`, the vault's signer (seal, key
//!    state, purpose, cryptoperiod, freezes — under the vault lock a freeze
//!    also takes; a key no longer in force signs only a sweep to its
//!    successor); `keyring`: the key inventory (keys made on every backend,
//!    rotation, lifecycle, self-test, a new split of the unseal shares).
//! 3. **signing gate** — `gate`: signs only [`chain_eth::Approved`] and
//!    [`chain_btc::Approved`] plans (made by `approve` in the pure chain
//!    crates from the decoded, digest-checked intents), derives their
//!    digests, verifies each signature with libsecp256k1, accepts only bytes
//!    that are the approved plan; a plan that differs takes `refusal`.
//! 4. **chain senders** — `eth` (plans approved against the intent, nonces
//!    from the database, signing through the gate, broadcast, speed-up and
//!    cancel), `eth_watch` (confirmations and reorgs, resume after a
//!    restart, nonce reports), `eth_stall` (a send next in line that stays
//!    unmined, sped up after its blocks), `btc` (networks, how our keys' outputs are spent, deposits as
//!    held outputs), `btc_transfers` (a wallet's Bitcoin keys and addresses;
//!    batches: reservation and PSBT pinned with every transfer's move to
//!    `signing`, approved again before signing, verified by Core), `deposits`
//!    (the Ethereum deposit scanner: seen, credited at depth, reorged),
//!    `eth_hd` (senders of single and HD keys, an HD account's deposit
//!    addresses, and which address a transfer leaves from).
//! 5. **queue and wallets** — `queue` (claims in priority order with leases,
//!    dependencies, retries with backoff or a hold for a person, the
//!    operators' retry, cancel, replace and stuck view), `wallets` (wallets,
//!    accounts opened on a backend, senders, deposit addresses), `recovery`
//!    (a restore's epoch, and its reconciliation with the chains before
//!    anything is signed), `btc_watch` (the Bitcoin operating loop: blocks
//!    checked and scanned, deposits, inclusions, reorganisations,
//!    confirmations, outputs taken), `reconcile` (runs comparing the chains
//!    and signer nodes with what Strongroom signed), `drift` (ledger against
//!    chain balances, openings).
//! 6. **transfers** — `requests` (a request validated; the funds check under
//!    the wallet's lock), `transfers` (judged by the policy in force under
//!    the governance, wallet and name locks, stored with its intent, version
//!    and decision; signed votes, time locks, lapse, cancel; balances),
//!    `rotation` (a key's successor, the wallets' accounts moved to it, and
//!    sweep transfers of its funds), `eth_sweeps` (deposit addresses swept
//!    into their sender, gas topped up first), `statements` (the ledger's movements,
//!    balance history and statements for a wallet's readers).
//! 7. **identity and governance** — `identity` (people, passwords, TOTP,
//!    sessions, API keys), `signed` (requests signed with an API key:
//!    `strongroom-request-v2`, nonces), `governance` (proposals
//!    applied by the admin quorum), `webhooks` (subscriptions and the
//!    delivery worker), `testing` (feature `testing`: pays through the
//!    whole pipeline, for tests and benches).

mod access;
mod api_keys;
mod approvals;
mod audit_key;
mod backups;
pub mod balances;
pub mod btc;
mod btc_bump;
pub mod btc_transfers;
pub mod btc_watch;
mod changes;
mod checkpoints;
mod clock;
pub mod cold;
mod consolidate;
pub mod cosigners;
pub mod crash;
pub mod deposits;
pub mod disk;
mod drift;
mod error;
pub mod eth;
pub mod eth_hd;
mod eth_rows;
mod eth_stall;
pub mod eth_sweeps;
pub mod eth_watch;
mod freezes;
mod gate;
mod gov_log;
mod gov_state;
pub mod governance;
mod governed;
pub mod identity;
mod judge;
mod judgment;
mod key_refresh;
mod keyring;
mod keystore;
mod ledger;
pub mod limiter;
pub mod metrics;
mod moves;
mod outbox;
mod passkeys;
mod proposal_checks;
mod queue;
mod reconcile;
mod record;
pub mod recovery;
mod refusal;
mod requests;
pub mod rotation;
mod scrape;
mod screening;
mod secrets;
mod service;
mod settings;
mod signed;
pub mod statements;
#[cfg(feature = "testing")]
pub mod testing;
pub mod threshold;
pub mod totp;
pub mod transfers;
mod vault;
pub mod wallets;
pub mod webhook_target;
pub mod webhooks;

pub use audit_key::{AuditKeyError, generate_audit_key, load_audit_key};
pub use checkpoints::{
    CheckpointFile, CheckpointHealth, CheckpointPolicy, CheckpointSigner, Checkpointer,
};
pub use checkpoints::{VerifyError, verify_audit};
pub use clock::{Clock, SystemClock};
pub use key_refresh::Refreshed;
pub use keyring::{NewHdKey, NewKey, SelfTest};
pub use keystore::SealStatus;
pub use reconcile::{Finding, Run};
pub use scrape::WorkStatus;
pub use service::{
    BtcStatus, DatabaseStatus, EthStatus, Liveness, SIGNING_LIMIT, Service, ServiceError, Status,
};
/// The request a change comes from (its id reaches the audit log and webhooks).
pub use storage::context::{request_id, with_request_id};

pub use audit;
pub use domain;
pub use keys;
pub use keys_mpc;
pub use storage;
