//! The console's pages: maud templates (escaped by default), rendered from
//! what the service returns to the signed-in person's capabilities.
//! Amounts are formatted from base units by the server; times are rendered
//! in UTC (shown in the viewer's zone by the console's script, UTC on hover).

use axum::http::StatusCode;
use domain::{Permission, WalletId, permits};
use maud::{DOCTYPE, Markup, html};
use service::identity::{AuthError, Principal, perm};
use service::storage::TransferRow;
use service::{Service, ServiceError};

/// A page that could not be made: a page to show with its status (the
/// person's matter), or the service's failure (a 503).
pub(super) enum Failed {
    Page(StatusCode, String),
    Service(ServiceError),
}

impl From<ServiceError> for Failed {
    fn from(e: ServiceError) -> Self {
        Failed::Service(e)
    }
}

/// At most this many transfers on the list.
const LIST: u32 = 100;

pub(super) fn layout(title: &str, who: Option<&Principal>, csrf: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Strongroom" }
                link rel="stylesheet" href="/ui/static/console.css";
            }
            body {
                header {
                    nav aria-label="Main" {
                        a class="brand" href="/ui/" { "Strongroom" }
                        @if who.is_some() {
                            a href="/ui/" { "Overview" }
                            a href="/ui/wallets" { "Wallets" }
                            a href="/ui/transfers" { "Transfers" }
                            @if who.is_some_and(|p| p.grants().iter().any(|g| g.role().permissions().contains(&Permission::InitiateTransfer))) {
                                a href="/ui/initiate" { "Initiate" }
                            }
                            @if who.is_some_and(|p| crate::governance::overseer(p).is_ok()) {
                                a href="/ui/governance" { "Governance" }
                            }
                            @if who.is_some_and(|p| p.grants().iter().any(|g| g.role().permissions().contains(&Permission::ReadAudit))) {
                                a href="/ui/audit" { "Audit" }
                            }
                            a href="/ui/passkeys" { "Passkeys" }
                        }
                    }
                    @if let Some(p) = who {
                        form method="post" action="/ui/logout" class="signout" {
                            input type="hidden" name="csrf" value=(csrf);
                            span class="who" { (p.actor().to_string()) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
                script src="/ui/static/console.js" defer {}
            }
        }
    }
    .into_string()
}

/// The sign-in form, with the reason of a failed attempt.
pub(super) fn login(failed: Option<&str>, passkeys: bool) -> String {
    layout(
        "Sign in",
        None,
        "",
        html! {
            @if let Some(why) = failed {
                p role="alert" class="error" { (why) }
            }
            form method="post" action="/ui/login" class="card" {
                label for="username" { "Name" }
                input id="username" name="username" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                label for="totp" { "Authenticator code (where your role needs one)" }
                input id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}";
                input type="hidden" name="passkey" value="";
                input type="hidden" name="credential" value="";
                button type="submit" { "Sign in" }
                @if passkeys {
                    button type="button" id="passkey-login" { "Sign in with a passkey instead of a code" }
                    p id="login-status" role="status" aria-live="polite" {}
                }
            }
        },
    )
}

/// What an unknown (or unreadable) page gets.
pub(super) fn not_found() -> Failed {
    Failed::Page(
        StatusCode::NOT_FOUND,
        layout(
            "Not found",
            None,
            "",
            html! { p { "Nothing here, or nothing you may read. " a href="/ui/" { "Back" } } },
        ),
    )
}

/// What a page gets when the server cannot answer (its database, say).
pub(super) fn unavailable() -> String {
    layout(
        "Unavailable",
        None,
        "",
        html! { p { "The server cannot answer this now; try again shortly. " a href="/ui/" { "Back" } } },
    )
}

/// A page the person's roles do not open: why, and what to do.
pub(super) fn not_allowed(who: &Principal, csrf: &str, title: &str, e: &AuthError) -> Failed {
    let why = match e {
        AuthError::MfaRequired => {
            "Your role needs an authenticator code for this page: enrol TOTP \
             (POST /v1/auth/totp/enrol, then /confirm) and sign in again with its code."
        }
        _ => "Your roles do not open this page.",
    };
    Failed::Page(
        StatusCode::FORBIDDEN,
        layout(
            title,
            Some(who),
            csrf,
            html! { p role="alert" class="error" { (why) } },
        ),
    )
}

/// The keystore is not open: nothing can be shown or signed until the
/// operators unseal it.
pub(super) fn sealed(status: &service::SealStatus) -> String {
    layout(
        "Sealed",
        None,
        "",
        html! {
            p role="alert" data-fact="seal" {
                @match status {
                    service::SealStatus::Uninitialized => "No keystore has been initialised: run strongroom init.",
                    service::SealStatus::Sealed { have, need } => {
                        "The keystore is sealed: " (have) " of " (need) " unseal shares given. "
                        "Holders of the shares give theirs with "
                        code { "strongroom operator unseal --addr <server>" } "."
                    }
                    service::SealStatus::Unsealed => "The keystore is open.",
                }
            }
            p { "Nothing is shown or signed while it is sealed. This page answers again once it opens." }
        },
    )
}

/// A handle on the person's wallet reads: global, or through one of their
/// wallets (its `wallets` lists their wallets either way).
pub(super) fn wallet_reader<'a>(
    svc: &'a Service,
    who: &'a Principal,
) -> Option<service::identity::Can<'a, perm::ReadWallet>> {
    let scoped = who.grants().iter().find_map(|g| match g.scope() {
        domain::Scope::Wallet(w) => Some(w),
        domain::Scope::Global => None,
    });
    svc.authorize::<perm::ReadWallet>(who, None)
        .ok()
        .or_else(|| svc.authorize::<perm::ReadWallet>(who, scoped).ok())
}

/// A short page saying why something was not done.
pub(super) fn message(title: &str, why: &str) -> String {
    layout(
        title,
        None,
        "",
        html! { p role="alert" class="error" { (why) } p { a href="/ui/passkeys" { "Back" } } },
    )
}

/// What a refused form gets.
pub(super) fn refused() -> String {
    layout(
        "Not allowed",
        None,
        "",
        html! { p { "This action is not allowed, or the form has expired. " a href="/ui/" { "Back" } } },
    )
}

fn seal_text(s: &service::SealStatus) -> String {
    match s {
        service::SealStatus::Uninitialized => "not initialised".into(),
        service::SealStatus::Sealed { have, need } => format!("sealed ({have} of {need} shares)"),
        service::SealStatus::Unsealed => "unsealed".into(),
    }
}

/// Seal, database, nodes, freezes: what an operator looks at first.
pub(super) async fn overview(
    svc: &Service,
    who: &Principal,
    status: &service::Status,
    csrf: &str,
) -> String {
    let sees_status = permits(who.grants(), Permission::ReadStatus, None);
    // Freezes as the API shows them: to an overseer past the second factor.
    let freezes = if crate::governance::overseer(who).is_ok() {
        svc.freezes().await.ok()
    } else {
        None
    };
    // The queue as its operators see it: how many wait, and what is stuck.
    let queue = match svc.authorize::<perm::OperateQueue>(who, None) {
        Ok(can) => {
            let waiting = can.queued().await.ok();
            can.stuck(20).await.ok().map(|stuck| (waiting, stuck))
        }
        Err(_) => None,
    };
    let needs_code = !who.mfa() && who.grants().iter().any(|g| g.role().is_privileged());
    let body = html! {
        @if needs_code {
            p role="alert" class="error" data-fact="mfa" {
                "Signed in without an authenticator code: your role's privileged pages stay closed \
                 until you enrol TOTP (POST /v1/auth/totp/enrol, then /confirm) and sign in with it."
            }
        }
        section aria-labelledby="health" {
            h2 id="health" { "Health" }
            dl class="facts" {
                dt { "Keystore" } dd data-fact="seal" { (seal_text(&status.seal)) }
                dt { "Database" }
                dd data-fact="database" {
                    @if status.database.reachable { "reachable" } @else { "unreachable" }
                    @if sees_status { " (" (status.database.backend) ")" }
                }
                @if sees_status {
                    dt { "Version" } dd { (status.version) }
                    @if permits(who.grants(), Permission::ReadAudit, None) {
                        @if let Some(n) = status.audit_records {
                            dt { "Audit records" } dd { (n) }
                        }
                    }
                    @for e in &status.ethereum {
                        dt { "Ethereum " (e.chain_id) }
                        dd { (e.healthy) " of " (e.endpoints) " endpoints answer" }
                    }
                }
            }
        }
        @if let Some((waiting, stuck)) = &queue {
            section aria-labelledby="queue" {
                h2 id="queue" { "Queue" }
                @if let Some(n) = waiting {
                    p data-fact="queued" { (n) " transfer(s) queued." }
                }
                @if stuck.is_empty() {
                    p data-fact="stuck" { "Nothing stuck." }
                } @else {
                    table data-fact="stuck" {
                        thead { tr { th { "Transfer" } th { "State" } th { "Why" } } }
                        tbody {
                            @for s in stuck {
                                tr {
                                    td { a href=(format!("/ui/transfers/{}", s.transfer.id)) { code { (s.transfer.id.to_string()) } } }
                                    td { (s.transfer.state) }
                                    td { (s.why) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(freezes) = freezes {
            section aria-labelledby="freezes" {
                h2 id="freezes" { "Freezes in force" }
                @if freezes.is_empty() {
                    p { "None." }
                } @else {
                    table {
                        thead { tr { th { "Scope" } th { "Reason" } th { "By" } th { "Since" } } }
                        tbody {
                            @for f in &freezes {
                                tr {
                                    td { (f.scope) } td { (f.reason) }
                                    td { (f.frozen_by.to_string()) } td { (when(f.frozen_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="roles" {
            h2 id="roles" { "Your roles" }
            ul {
                @for g in who.grants() {
                    li { (g.role().as_str()) " — " (scope_text(g.scope())) }
                }
            }
        }
    };
    layout("Overview", Some(who), csrf, body)
}

fn scope_text(s: domain::Scope) -> String {
    match s {
        domain::Scope::Global => "everywhere".into(),
        domain::Scope::Wallet(w) => format!("wallet {w}"),
    }
}

/// A time as UTC, to the second (RFC 9110's form: `Mon, 07 Dec 2026
/// 04:53:20 GMT`).
pub(super) fn utc(t: domain::Timestamp) -> String {
    let ms = u64::try_from(t.as_millis()).unwrap_or(0);
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// A time: UTC as rendered (and on hover); the console's script shows it
/// in the viewer's own zone.
pub(super) fn when(t: domain::Timestamp) -> Markup {
    let text = utc(t);
    html! { time data-ms=(t.as_millis()) title=(text) { (text) } }
}

/// The transfers the person may read: every wallet's with a global read,
/// else those of their wallets; newest first.
/// The list's filters (a form of GET parameters; empty means any).
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct TransferFilter {
    #[serde(default)]
    state: String,
    #[serde(default)]
    wallet: String,
    #[serde(default)]
    asset: String,
    /// `YYYY-MM-DD` (UTC): created on or after that day.
    #[serde(default)]
    since: String,
}

impl TransferFilter {
    /// Midnight UTC of `since`, in ms.
    fn since_ms(&self) -> Result<Option<i64>, String> {
        if self.since.is_empty() {
            return Ok(None);
        }
        let bad = || format!("since {:?}: a day as YYYY-MM-DD", self.since);
        let parts: Vec<&str> = self.since.split('-').collect();
        let [y, m, d] = parts[..] else {
            return Err(bad());
        };
        let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<i64>(), d.parse::<i64>()) else {
            return Err(bad());
        };
        if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return Err(bad());
        }
        // Days from the civil date (H. Hinnant's algorithm), proleptic
        // Gregorian.
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Ok(Some(days * 86_400_000))
    }

    fn form(&self) -> Markup {
        html! {
            form method="get" action="/ui/transfers" class="filters" {
                label for="f-state" { "State" }
                input id="f-state" name="state" value=(self.state) list="states";
                datalist id="states" {
                    @for s in lifecycle::State::ALL { option value=(s.to_string()) {} }
                }
                label for="f-wallet" { "Wallet" }
                input id="f-wallet" name="wallet" value=(self.wallet);
                label for="f-asset" { "Asset" }
                input id="f-asset" name="asset" value=(self.asset);
                label for="f-since" { "Since (UTC day)" }
                input id="f-since" name="since" type="date" value=(self.since);
                button type="submit" { "Filter" }
            }
        }
    }
}

pub(super) async fn transfers(
    svc: &Service,
    who: &Principal,
    csrf: &str,
    filter: &TransferFilter,
) -> Result<String, Failed> {
    let refused = |why: String| {
        Failed::Page(
            StatusCode::BAD_REQUEST,
            layout(
                "Transfers",
                Some(who),
                csrf,
                html! { (filter.form()) p role="alert" class="error" { (why) } },
            ),
        )
    };
    let since = filter.since_ms().map_err(refused)?;
    let state = Some(filter.state.trim()).filter(|s| !s.is_empty());
    if let Some(s) = state
        && s.parse::<lifecycle::State>().is_err()
    {
        return Err(refused(format!("state {s:?}: one of the transfer states")));
    }
    let only: Option<WalletId> = match filter.wallet.trim() {
        "" => None,
        w => Some(
            w.parse()
                .map_err(|_| refused(format!("wallet {w:?}: a wallet id")))?,
        ),
    };
    let wallets: Vec<Option<WalletId>> = if let Some(w) = only {
        if !permits(who.grants(), Permission::ReadWallet, Some(w)) {
            return Err(not_allowed(who, csrf, "Transfers", &AuthError::Forbidden));
        }
        vec![Some(w)]
    } else if permits(who.grants(), Permission::ReadWallet, None) {
        vec![None]
    } else {
        let mut w: Vec<Option<WalletId>> = who
            .grants()
            .iter()
            .filter_map(|g| match g.scope() {
                domain::Scope::Wallet(w)
                    if permits(who.grants(), Permission::ReadWallet, Some(w)) =>
                {
                    Some(Some(w))
                }
                _ => None,
            })
            .collect();
        w.sort();
        w.dedup();
        w
    };
    if wallets.is_empty() {
        return Err(not_allowed(who, csrf, "Transfers", &AuthError::Forbidden));
    }
    let mut rows: Vec<TransferRow> = Vec::new();
    for w in wallets {
        let can = svc
            .authorize::<perm::ReadWallet>(who, w)
            .map_err(|e| not_allowed(who, csrf, "Transfers", &e))?;
        rows.extend(can.transfers(w, state, None, LIST).await?);
    }
    let asset = filter.asset.trim();
    rows.retain(|t| {
        (asset.is_empty() || t.asset == asset)
            && since.is_none_or(|s| t.created_at.as_millis() >= s)
    });
    rows.sort_by_key(|t| std::cmp::Reverse(t.id));
    rows.truncate(LIST as usize);
    let body = html! {
        (filter.form())
        @if rows.is_empty() {
            p { "No transfers." }
        } @else {
            table class="transfers" {
                thead {
                    tr {
                        th { "Created" } th { "Wallet" } th { "Asset" }
                        th class="num" { "Amount" } th { "Destination" } th { "State" }
                    }
                }
                tbody {
                    @for t in &rows {
                        tr data-transfer=(t.id.to_string()) {
                            td { a href=(format!("/ui/transfers/{}", t.id)) { (when(t.created_at)) } }
                            td { code { (t.wallet.to_string()) } }
                            td { (t.asset) }
                            td class="num" {
                                (crate::amounts::decimal(t.amount, svc.asset_decimals(&t.asset))
                                    .unwrap_or_else(|| format!("{} base units", t.amount)))
                            }
                            td { code { (crate::error::shown_address(t.destination.clone())) } }
                            td { span class=(format!("state {}", t.state)) { (t.state) } }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Transfers", Some(who), csrf, body))
}

/// A kind as the API names it (`withdrawal`, `gas_top_up`…).
fn kind_name(k: domain::TransferKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A digest in groups of four hex characters, to read out and compare.
fn grouped(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One transfer as the server reads it from its intent bytes: what an
/// approver approves (the digest is computed here from those bytes and
/// compared with the stored one), the policy's decision, the approvals and
/// the history. `None`: not found for this person.
pub(super) async fn transfer(
    svc: &Service,
    who: &Principal,
    id: domain::TransferId,
    csrf: &str,
) -> Result<String, Failed> {
    let title = format!("Transfer {id}");
    let wallet = match svc.transfer_wallet(id).await {
        Ok(w) => w,
        Err(ServiceError::Storage(service::storage::StorageError::NotFound { .. })) => {
            return Err(not_found());
        }
        Err(e) => return Err(e.into()),
    };
    // Outside the person's scope, as unknown.
    if !permits(who.grants(), Permission::ReadWallet, Some(wallet)) {
        return Err(not_found());
    }
    let can = svc
        .authorize::<perm::ReadWallet>(who, Some(wallet))
        .map_err(|e| not_allowed(who, csrf, &title, &e))?;
    let (t, approvals) = can.transfer(id).await?;
    let history = can.history(id).await?;
    // Read as the server reads it before signing (the configured assets,
    // the stored digest), and it must be this row's: its id, wallet,
    // asset, amount and destination.
    let intent = can
        .transfer_intent(&t)
        .map_err(|e| e.to_string())
        .and_then(|i| {
            let same = i.id() == t.id
                && i.wallet() == t.wallet
                && i.amount().asset().id().to_string() == t.asset
                && i.amount().units() == t.amount
                && i.destination()
                    .as_str()
                    .eq_ignore_ascii_case(&t.destination);
            if same {
                Ok(i)
            } else {
                Err("the intent is not this transfer's".to_owned())
            }
        });
    let intact = intent.is_ok();
    let decision: serde_json::Value = serde_json::from_str(&t.decision).unwrap_or_default();
    let first_time = decision
        .get("first_time_destination")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let approver = permits(who.grants(), Permission::ApproveTransfer, Some(wallet));
    let sent = super::sent::sent(&can, &t).await?;
    let passkey = if approver && intact && t.state == "pending_approval" {
        approve_with_passkey(svc, who, &t, csrf).await?
    } else {
        None
    };
    let body = html! {
        @match &intent {
            Ok(i) => {
                section aria-labelledby="intent" {
                    h2 id="intent" { "What is approved" }
                    dl class="facts" {
                        dt { "Kind" } dd { (kind_name(i.kind())) }
                        dt { "Wallet" } dd { code { (i.wallet().to_string()) } }
                        dt { "Pays" }
                        dd data-fact="amount" {
                            (domain::amount::format_units(i.amount().units(), i.amount().asset().decimals(), false))
                            " " (i.amount().asset().symbol().as_str())
                            " (" (i.amount().units()) " base units)"
                        }
                        dt { "To" }
                        dd data-fact="destination" {
                            code { (i.destination().as_str()) }
                            @if first_time { " " strong class="error" { "first payment to this address" } }
                        }
                        dt { "Network" } dd { (i.amount().asset().network().to_string()) }
                        dt { "Asset" } dd { code { (i.amount().asset().id().to_string()) } }
                        @if let Some(r) = i.reference() { dt { "Reference" } dd { (r) } }
                        dt { "Asked by" } dd { (i.initiator().to_string()) }
                        dt { "Intent digest" }
                        dd data-fact="digest" { code { (grouped(&t.digest)) } }
                    }
                }
            }
            Err(why) => {
                p role="alert" class="error" data-fact="refused" {
                    "This transfer cannot be read as the server reads it before signing ("
                    (why) "): do not approve; tell a security officer."
                }
            }
        }
        section aria-labelledby="state" {
            h2 id="state" { "State" }
            p { span class=(format!("state {}", t.state)) { (t.state) } }
            @if let Some(rule) = decision.get("rule").and_then(|r| r.as_str()) {
                p { "Policy rule: " strong { (rule) } " (policy version " (t.policy_version) ")" }
            }
            @if let Some(trace) = decision.get("trace").and_then(|r| r.as_array()) {
                ol {
                    @for step in trace {
                        li {
                            (step.get("subject").and_then(|v| v.as_str()).unwrap_or(""))
                            ": " (step.get("why").and_then(|v| v.as_str()).unwrap_or(""))
                        }
                    }
                }
            }
        }
        section aria-labelledby="approvals" {
            h2 id="approvals" { "Approvals" }
            @if approvals.is_empty() { p { "None yet." } }
            ul {
                @for a in &approvals {
                    li {
                        (a.approver.to_string()) ": " (a.vote)
                        @if a.voided_at.is_some() { " (no longer counts)" }
                        " — " (when(a.at))
                    }
                }
            }
            @if approver && intact && t.state == "pending_approval" {
                @if let Some(p) = &passkey {
                    (p)
                } @else {
                    p class="hint" {
                        "Approve from your own machine, where your approver key is: "
                        code { "strongroom approve --transfer " (t.id.to_string()) " --addr <server> --key-file <key> --approver-key <signing key>" }
                        " shows this transfer decoded from the same bytes and the same digest."
                    }
                }
            }
        }
        @if let Some(tx) = sent {
            section aria-labelledby="sent" {
                h2 id="sent" { "The transaction" }
                (tx)
            }
        }
        section aria-labelledby="history" {
            h2 id="history" { "History" }
            table {
                thead { tr { th { "When" } th { "State" } th { "By" } th { "Why" } } }
                tbody {
                    @for h in &history {
                        tr { td { (when(h.at)) } td { (h.state) } td { (h.actor) } td { (h.why) } }
                    }
                }
            }
        }
    };
    Ok(layout(&title, Some(who), csrf, body))
}

/// How long an approval signed in the browser stays valid (the least any
/// installation allows: `max_approval_ttl_hours` is at least 1).
const PASSKEY_APPROVAL_MS: i64 = 3_600_000;

/// The approve and reject buttons of an approver whose key in force is a
/// passkey: the page carries the statements' digests (the WebAuthn
/// challenges) and expiry; the server verifies the assertion against the
/// statement it makes again from the stored transfer, so a page edited
/// before signing gets its approval refused.
async fn approve_with_passkey(
    svc: &Service,
    who: &Principal,
    t: &TransferRow,
    csrf: &str,
) -> Result<Option<Markup>, Failed> {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let Some(key) = svc.approver_key_in_force(who.actor()).await? else {
        return Ok(Some(html! {
            p class="hint" {
                "You have no approver key yet: make a passkey on the "
                a href="/ui/passkeys" { "Passkeys" } " page and have the admins enroll it."
            }
        }));
    };
    let Ok(policy::ApproverKey::Passkey { credential_id, .. }) = key.parse() else {
        return Ok(None);
    };
    let Some(rp) = svc.relying_party() else {
        return Ok(Some(html! {
            p class="error" { "This server has no [console] relying party: passkey approvals are off." }
        }));
    };
    let Ok(can) = svc.authorize::<perm::ApproveTransfer>(who, Some(t.wallet)) else {
        return Ok(None);
    };
    let expires_at =
        domain::Timestamp::from_millis(svc.now().as_millis().saturating_add(PASSKEY_APPROVAL_MS));
    let approve = can
        .statement(t.id, policy::Vote::Approve, expires_at)
        .await?;
    let reject = can
        .statement(t.id, policy::Vote::Reject, expires_at)
        .await?;
    Ok(Some(html! {
        div id="passkey-vote" class="card"
            data-transfer=(t.id.to_string())
            data-csrf=(csrf)
            data-rp-id=(rp.rp_id)
            data-credential=(b64(&credential_id))
            data-expires-at=(expires_at.as_millis())
            data-challenge-approve=(b64(&approve.challenge()))
            data-challenge-reject=(b64(&reject.challenge())) {
            p {
                "Your passkey signs the approval statement of intent digest "
                code { (grouped(&t.digest)) }
                " (policy version " (t.policy_version) "), valid until "
                (when(expires_at)) ". Compare the digest with the requester's out of band first."
            }
            button type="button" id="approve-button" data-vote="approve" { "Approve with passkey" }
            " "
            button type="button" id="reject-button" data-vote="reject" { "Reject with passkey" }
            label for="reject-reason" { "Why you reject it (kept in its history)" }
            input id="reject-reason" maxlength="500";
            p id="vote-status" role="status" aria-live="polite" {}
        }
    }))
}

/// Passkeys: make one (its key is what the admins enroll as your approver
/// key), and the approver key in force.
pub(super) async fn passkeys(svc: &Service, who: &Principal, csrf: &str) -> Result<String, Failed> {
    let key = svc.approver_key_in_force(who.actor()).await?;
    let configured = svc.relying_party().is_some();
    let mine = match svc.passkeys(who).await {
        Ok(p) => p,
        Err(ServiceError::Auth(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let body = html! {
        section aria-labelledby="sign-in" {
            h2 id="sign-in" { "Passkeys you sign in with" }
            @if mine.is_empty() { p { "None: you sign in with your password and authenticator code." } }
            ul {
                @for p in &mine {
                    li data-credential=(p.credential_id) {
                        code { (p.credential_id.get(..16).unwrap_or(&p.credential_id)) "…" }
                        " added " (when(p.created_at))
                        @if let Some(t) = p.last_used_at { ", last used " (when(t)) }
                        form method="post" action="/ui/passkeys/remove" class="inline" {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="credential" value=(p.credential_id);
                            button type="submit" { "Remove" }
                        }
                    }
                }
            }
        }
        section aria-labelledby="in-force" {
            h2 id="in-force" { "Your approver key" }
            @match key.as_deref().map(str::parse::<policy::ApproverKey>) {
                None => p { "None enrolled: your approvals cannot count yet." }
                Some(Ok(policy::ApproverKey::Passkey { .. })) => {
                    p { "A passkey: approve transfers on their pages here, in this browser." }
                    p { code class="key" { (key.as_deref().unwrap_or_default()) } }
                }
                Some(_) => p { "An Ed25519 key: approve with " code { "strongroom approve" } " on your machine." }
            }
        }
        section aria-labelledby="new" {
            h2 id="new" { "Make a passkey" }
            @if configured {
                p {
                    "Your authenticator makes a key that never leaves it. You sign in with it from then on "
                    "(instead of the authenticator code); it approves transfers once the admins enroll the key "
                    "shown as your approver key (a governance proposal, "
                    code { "register_approver_key" } "), and every signer node lists it in its own configuration."
                }
                div id="passkey-register" data-csrf=(csrf) {
                    button type="button" id="register-button" { "Make a passkey" }
                    p id="register-status" role="status" aria-live="polite" {}
                    p { code id="new-approver-key" class="key" {} }
                }
            } @else {
                p class="error" { "This server has no [console] rp_id and origins: passkeys cannot be made." }
            }
        }
    };
    Ok(layout("Passkeys", Some(who), csrf, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_read_in_groups_of_four() {
        assert_eq!(grouped("0cd7859a64e2"), "0cd7 859a 64e2");
    }

    #[test]
    fn days_filter_from_midnight_utc() {
        let since = |s: &str| {
            TransferFilter {
                since: s.into(),
                ..Default::default()
            }
            .since_ms()
        };
        assert_eq!(since("1970-01-01"), Ok(Some(0)));
        assert_eq!(since("2000-02-29"), Ok(Some(951_782_400_000)));
        assert_eq!(since("2026-12-07"), Ok(Some(1_796_601_600_000)));
        assert_eq!(since(""), Ok(None));
        for bad in [
            "2026-13-01",
            "yesterday",
            "2026-12",
            "1969-12-31",
            "2026-12-07-1",
        ] {
            assert!(since(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(
            utc(domain::Timestamp::from_millis(0)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            utc(domain::Timestamp::from_millis(951_782_400_000)),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
    }
}
