//! Policy, approvals and freezes from the command line: approver keys made
//! here (the private half never leaves this machine), approvals signed with
//! them over a running server's API, policies checked before they are
//! proposed, and freezes and prices from the console when the API cannot
//! be reached.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use ed25519_dalek::{Signer, SigningKey};
use zeroize::Zeroizing;

use crate::Failure;
use crate::config::{Config, ConfigError};
use crate::keyctl::console_actor;
use crate::operator::signed_request;
use crate::serve::{build_service, runtime};

fn usage(key: &str, message: impl Into<String>) -> Failure {
    Failure::Config(ConfigError {
        key: key.into(),
        message: message.into(),
    })
}

const APPROVER_MAGIC: &str = "strongroom-approver-key-v1";

/// An approver's Ed25519 key: `strongroom-approver-key-v1`, the seed in hex.
struct ApproverKey(SigningKey);

impl std::fmt::Debug for ApproverKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApproverKey(<redacted>)")
    }
}

impl ApproverKey {
    fn load(path: &Path) -> Result<ApproverKey, Failure> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let bad = || usage("--approver-key", "not a strongroom approver key file");
        let mut lines = text.lines();
        if lines.next() != Some(APPROVER_MAGIC) {
            return Err(bad());
        }
        let seed = lines
            .next()
            .and_then(|l| l.strip_prefix("secret "))
            .ok_or_else(bad)?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(seed, &mut bytes[..]).map_err(|_| bad())?;
        Ok(ApproverKey(SigningKey::from_bytes(&bytes)))
    }
}

/// `strongroom approver-key new`: a key pair; the private half to `--out`
/// (0600, never overwritten), the public half printed for the
/// `register_approver_key` proposal.
pub(crate) fn new_approver_key(out: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut seed[..]).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let text = Zeroizing::new(format!(
        "{APPROVER_MAGIC}\nsecret {}\n",
        hex::encode(&seed[..])
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "public key: {}",
        hex::encode(key.verifying_key().to_bytes())
    );
    println!(
        "register it with a proposal: {{\"change\": {{\"kind\": \"register_approver_key\", \"principal\": \"<you>\", \"public_key\": \"{}\"}}}}",
        hex::encode(key.verifying_key().to_bytes())
    );
    Ok(())
}

pub(crate) fn api_json(
    addr: &str,
    key: &crate::apikey::KeyFile,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<serde_json::Value, Failure> {
    let (s, b) = signed_request(addr, method, path, body, Some(key))?;
    let v: serde_json::Value = serde_json::from_str(&b).unwrap_or(serde_json::Value::Null);
    if !(200..300).contains(&s) {
        let code = v["code"].as_str().unwrap_or("error");
        let message = v["message"].as_str().unwrap_or(&b);
        return Err(Failure::Runtime(anyhow::anyhow!(
            "HTTP {s} {code}: {message}"
        )));
    }
    Ok(v)
}

/// `strongroom approve`: fetches the transfer, shows what it does and why
/// it needs approval, signs the approval statement with the approver's own
/// key and sends it.
pub(crate) fn approve(
    addr: &str,
    key_file: &Path,
    approver_key: &Path,
    transfer: &str,
    rejection: Option<&str>,
    ttl_minutes: u32,
    yes: bool,
) -> Result<(), Failure> {
    // `Some(why)` rejects ("" for no reason given).
    let reject = rejection.is_some();
    if !(1..=24 * 60).contains(&ttl_minutes) {
        return Err(usage("--ttl-minutes", "between 1 and 1440"));
    }
    let id: domain::TransferId = transfer
        .parse()
        .map_err(|e: domain::IdError| usage("--transfer", e.to_string()))?;
    let key = crate::apikey::KeyFile::load(key_file)?;
    let approver = ApproverKey::load(approver_key)?;
    let t = api_json(addr, &key, "GET", &format!("/v1/transfers/{id}"), None)?;
    let field = |k: &str| -> Result<&str, Failure> {
        t[k].as_str()
            .ok_or_else(|| Failure::Runtime(anyhow::anyhow!("the server's answer lacks {k}")))
    };
    // What is shown and signed comes from the intent's own bytes: their
    // SHA-256 is the digest signed, so a server (or anything between) that
    // lies about the amount or the destination gets a signature for what
    // was shown, which matches no other transfer.
    let bytes = hex::decode(field("intent")?)
        .map_err(|_| Failure::Runtime(anyhow::anyhow!("malformed intent bytes")))?;
    let intent = domain::TransferIntent::decode_as_written(&bytes)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("the intent does not decode: {e}")))?;
    if intent.id() != id {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the server answered with another transfer's intent"
        )));
    }
    if intent.digest().to_string() != field("digest")? {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the intent's digest is not the one the server names"
        )));
    }
    let decision_id = uuid::Uuid::try_parse(field("decision_id")?)
        .map_err(|_| Failure::Runtime(anyhow::anyhow!("malformed decision id")))?;
    let policy_version = t["policy_version"]
        .as_u64()
        .ok_or_else(|| Failure::Runtime(anyhow::anyhow!("malformed policy version")))?;
    println!("transfer    {id}");
    println!("state       {}", field("state")?);
    println!("wallet      {}", intent.wallet());
    println!("initiator   {}", intent.initiator());
    println!("asset       {}", intent.amount().asset().id());
    println!("amount      {}", intent.amount());
    println!("destination {}", intent.destination().as_str());
    if let Some(r) = intent.reference() {
        println!("reference   {r}");
    }
    if t["decision"]["first_time_destination"] == true {
        println!("            (never paid before: check it with its owner)");
    }
    println!("digest      {}", intent.digest());
    println!(
        "policy      version {policy_version}, rule {}",
        t["decision"]["rule"].as_str().unwrap_or("(none)")
    );
    // What was shown is what is signed; a person says so first.
    if !yes {
        let what = if reject { "rejection" } else { "approval" };
        eprint!("Sign your {what} of exactly this transfer? Type yes: ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .context("reading the confirmation from standard input")?;
        if answer.trim() != "yes" {
            return Err(usage("--yes", "not confirmed: nothing was signed"));
        }
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis();
    let expires_ms = i64::try_from(now_ms)
        .context("the clock is past 2^63 ms")?
        .saturating_add(i64::from(ttl_minutes) * 60_000);
    let vote = if reject {
        policy::Vote::Reject
    } else {
        policy::Vote::Approve
    };
    let statement = policy::ApprovalStatement {
        intent: intent.digest(),
        policy_version,
        decision_id: *decision_id.as_bytes(),
        expires_at: domain::Timestamp::from_millis(expires_ms),
        vote,
    };
    let signature = approver.0.sign(&statement.message()).to_bytes();
    let body = serde_json::json!({
        "vote": if reject { "reject" } else { "approve" },
        "reason": rejection.filter(|r| !r.is_empty()),
        "expires_at_ms": expires_ms,
        "signature": hex::encode(signature),
    })
    .to_string();
    let after = api_json(
        addr,
        &key,
        "POST",
        &format!("/v1/transfers/{id}/approvals"),
        Some(&body),
    )?;
    println!(
        "{} → {}",
        if reject { "rejected" } else { "approved" },
        after["state"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `strongroom transfer dry-run`: would this transfer be allowed, and why?
pub(crate) fn dry_run(
    addr: &str,
    key_file: &Path,
    wallet: &str,
    asset: &str,
    amount: &str,
    to: &str,
) -> Result<(), Failure> {
    let key = crate::apikey::KeyFile::load(key_file)?;
    let body = serde_json::json!({
        "wallet": wallet, "asset": asset, "amount": amount, "destination": to,
    })
    .to_string();
    let v = api_json(addr, &key, "POST", "/v1/policy/dry-run", Some(&body))?;
    match v["policy_version"].as_u64() {
        Some(n) => println!("policy version {n}"),
        None => println!("no policy yet"),
    }
    println!("{}", v["explanation"].as_str().unwrap_or(""));
    Ok(())
}

/// `strongroom policy check`: a policy file as the server will read it.
pub(crate) fn check_policy(file: &Path) -> Result<(), Failure> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let p = policy::Policy::parse(&text).map_err(|e| usage("policy", e.to_string()))?;
    println!("ok: {} rules, digest {}", p.rules().len(), p.digest());
    let windows = p.window_specs();
    if !windows.is_empty() {
        println!("rolling windows: {}", windows.len());
    }
    // The document to propose, as JSON (what `set_policy` stores).
    let proposal = serde_json::json!({"change": {"kind": "set_policy", "document": text}});
    println!("proposal body: {proposal}");
    Ok(())
}

/// `strongroom freeze`: from the console, with the server's own files, for
/// when the API cannot be reached. Takes effect at once; releasing it is a
/// proposal under the admin quorum.
pub(crate) fn freeze(c: Config, scope: &str, reason: &str) -> Result<(), Failure> {
    runtime()?.block_on(async {
        let (svc, store) = build_service(&c).await?;
        let r = async {
            let scope: service::governance::FreezeScope = scope
                .parse()
                .map_err(|e: service::ServiceError| usage("--scope", e.to_string()))?;
            svc.console_freeze(&console_actor(), scope, reason)
                .await
                .map_err(|e| match e {
                    service::ServiceError::Invalid(m) => usage("arguments", m),
                    other => Failure::Runtime(other.into()),
                })
        }
        .await;
        store.close().await;
        let placed = r?;
        let f = &placed.freeze;
        println!("frozen: {} ({}), freeze id {}", f.scope, f.reason, f.id);
        for (send, outcome) in &placed.may_have_reached {
            println!("started before the freeze, may have reached the network: {send} ({outcome})");
        }
        Ok(())
    })
}

/// `strongroom approve --proposal ID`: an admin's vote on a governance
/// proposal. Shows the change, rebuilds what is signed (`SRGV`: the
/// proposal, the digest of its change as shown, the governance log's head
/// it was made on) and refuses if the server's statement differs, signs
/// with the admin's signing key (the approver key file, or the API key
/// itself, which is what an admin made at bootstrap signs with) and sends it.
pub(crate) fn vote_proposal(
    addr: &str,
    key_file: &Path,
    signing_key: Option<&Path>,
    id: &str,
    approve: bool,
) -> Result<(), Failure> {
    use sha2::Digest;
    let key = crate::apikey::KeyFile::load(key_file)?;
    let signer = signing_key.map(ApproverKey::load).transpose()?;
    let path = format!("/v1/proposals/{id}");
    let p = api_json(addr, &key, "GET", &path, None)?;
    println!(
        "proposal {id} ({}): {}",
        p["state"].as_str().unwrap_or("?"),
        p["summary"].as_str().unwrap_or("?")
    );
    println!("change: {}", p["change"]);
    let canonical = audit::canonical_json(&p["change"])
        .map_err(|e| anyhow::anyhow!("the change is not canonical JSON: {e}"))?;
    let digest: [u8; 32] = sha2::Sha256::digest(canonical.as_bytes()).into();
    let base_hash: [u8; 32] = p["base_hash"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("the proposal has no base: it cannot be signed"))?;
    let statement = policy::GovernanceStatement {
        proposal: *uuid::Uuid::try_parse(id)
            .map_err(|_| usage("--proposal", "a proposal id (a UUID)"))?
            .as_bytes(),
        change_digest: digest,
        base_seq: p["base_seq"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("the proposal has no base"))?,
        base_hash,
        approve: true,
    };
    if p["approve_statement"].as_str() != Some(hex::encode(statement.message()).as_str()) {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the server's statement for this proposal is not the change shown: not signed"
        )));
    }
    let statement = policy::GovernanceStatement {
        approve,
        ..statement
    };
    let signature = match &signer {
        Some(k) => k.0.sign(&statement.message()).to_bytes(),
        None => key.sign(&statement.message()),
    };
    let body = serde_json::json!({
        "vote": if approve { "approve" } else { "veto" },
        "signature": hex::encode(signature),
    })
    .to_string();
    let v = api_json(addr, &key, "POST", &format!("{path}/votes"), Some(&body))?;
    println!("proposal {id} {}", v["state"].as_str().unwrap_or("?"));
    Ok(())
}

/// `strongroom price set`: proposes an operator-kept price for USD rules
/// (`set_price`, applied by the admin quorum: a price moves every USD
/// limit, so the console does not set one alone).
pub(crate) fn propose_price(
    addr: &str,
    key_file: &Path,
    asset: &str,
    usd: &str,
) -> Result<(), Failure> {
    let asset: domain::AssetId = asset
        .parse()
        .map_err(|e: domain::AssetError| usage("--asset", e.to_string()))?;
    let key = crate::apikey::KeyFile::load(key_file)?;
    let body = serde_json::json!({
        "change": { "kind": "set_price", "asset": asset.to_string(), "usd": usd }
    })
    .to_string();
    let v = api_json(addr, &key, "POST", "/v1/proposals", Some(&body))?;
    println!(
        "proposal {} {}: {asset} = ${usd}",
        v["id"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `strongroom apikey propose`: a new key pair, its public half registered
/// over the API with an admin's key and its role proposed (applied when
/// the admin quorum approves; at once when that admin's approval is the
/// quorum); the private half printed once (and written to `--out`).
pub(crate) fn propose_api_key(
    addr: &str,
    admin_key: &Path,
    spec: &crate::apikey::KeySpec<'_>,
    out: Option<&Path>,
) -> Result<(), Failure> {
    let grant = crate::apikey::grant_of(spec.role, spec.scope)?;
    if out.is_some_and(Path::exists) {
        return Err(usage("--out", "the file exists"));
    }
    // Over the API the owner is `user:<uuid>` (`GET /v1/users`).
    if let Some(o) = spec.owner
        && !matches!(o.parse::<domain::Actor>(), Ok(domain::Actor::User(_)))
    {
        return Err(usage("--owner", "user:<uuid> when proposing over the API"));
    }
    let admin = crate::apikey::KeyFile::load(admin_key)?;
    let (seed, public) = crate::apikey::new_key()?;
    let body = serde_json::json!({
        "name": spec.name,
        "public_key": hex::encode(public),
        "grants": [{ "role": grant.role().as_str(), "scope": grant.scope().to_string() }],
        "valid_days": spec.valid_days,
        "owner": spec.owner,
    })
    .to_string();
    let (status, answer) = signed_request(addr, "POST", "/v1/api-keys", Some(&body), Some(&admin))?;
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    if status != 201 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "HTTP {status} {}: {}",
            v["code"].as_str().unwrap_or("error"),
            v["message"].as_str().unwrap_or(&answer)
        )));
    }
    let id = v["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the answer names no key id"))?;
    println!("key {id}");
    for p in v["role_proposals"].as_array().into_iter().flatten() {
        println!(
            "role {} scope {} proposal {} {}",
            grant.role(),
            grant.scope(),
            p["id"].as_str().unwrap_or("?"),
            p["state"].as_str().unwrap_or("?")
        );
    }
    crate::apikey::hand_out(id, &seed, out)
}
