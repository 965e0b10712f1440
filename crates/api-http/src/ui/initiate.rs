//! Initiating a withdrawal from the console: the form is checked first
//! ("would it be allowed, and why": the policy's dry run, nothing created),
//! then requested with an Idempotency-Key the page made at the check, so a
//! second click, a reload or a resubmitted form replays the same transfer
//! instead of making another.

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use domain::{Permission, WalletId, permits};
use maud::{Markup, html};
use serde::Deserialize;
use service::Service;
use service::identity::{Principal, perm};
use service::transfers::{Priority, TransferRequest};

use super::pages::{self, Failed};
use super::{Reader, answer, signed_in_to_change, unavailable};

/// What the form carries (and carries again after the check).
#[derive(Default, Deserialize)]
pub(super) struct Withdrawal {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    wallet: String,
    #[serde(default)]
    asset: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    destination: String,
    #[serde(default)]
    reference: String,
    /// Made at the check; sent with the request.
    #[serde(default)]
    idempotency_key: String,
    /// `check` or `request`.
    #[serde(default)]
    action: String,
}

impl std::fmt::Debug for Withdrawal {
    // The CSRF token stays out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Withdrawal")
            .field("wallet", &self.wallet)
            .field("asset", &self.asset)
            .field("amount", &self.amount)
            .field("destination", &self.destination)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

impl Withdrawal {
    fn request(&self) -> Result<TransferRequest, String> {
        Ok(TransferRequest {
            wallet: self
                .wallet
                .trim()
                .parse()
                .map_err(|e: domain::IdError| format!("wallet: {e}"))?,
            asset: self
                .asset
                .trim()
                .parse()
                .map_err(|e: domain::AssetError| format!("asset: {e}"))?,
            amount: self.amount.trim().to_owned(),
            destination: self.destination.trim().to_owned(),
            reference: Some(self.reference.trim().to_owned()).filter(|r| !r.is_empty()),
            external_id: None,
            priority: Priority::default(),
            depends_on: None,
            kind: domain::TransferKind::Withdrawal,
            source: None,
        })
    }
}

/// The wallets the person may initiate in.
async fn wallets(svc: &Service, who: &Principal) -> Result<Vec<(WalletId, String)>, Failed> {
    let Some(can) = pages::wallet_reader(svc, who) else {
        return Ok(Vec::new());
    };
    Ok(can
        .wallets(None, 500)
        .await?
        .into_iter()
        .filter(|w| permits(who.grants(), Permission::InitiateTransfer, Some(w.id)))
        .map(|w| (w.id, w.name))
        .collect())
}

fn form(f: &Withdrawal, wallets: &[(WalletId, String)], csrf: &str, checked: bool) -> Markup {
    html! {
        form method="post" action="/ui/initiate" class="card" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="idempotency_key" value=(f.idempotency_key);
            label for="wallet" { "Wallet" }
            select id="wallet" name="wallet" required {
                @for (id, name) in wallets {
                    option value=(id.to_string()) selected[f.wallet == id.to_string()] { (name) " (" (id.to_string()) ")" }
                }
            }
            label for="asset" { "Asset (e.g. eip155:1/native, bitcoin:mainnet/native)" }
            input id="asset" name="asset" value=(f.asset) required readonly[checked];
            label for="amount" { "Amount, in the asset's units (e.g. 2 or 0.0015)" }
            input id="amount" name="amount" value=(f.amount) inputmode="decimal" required readonly[checked];
            label for="destination" { "To (as the recipient gave it: EIP-55 or bech32)" }
            input id="destination" name="destination" value=(f.destination) required autocomplete="off" spellcheck="false" readonly[checked];
            label for="reference" { "Reference (optional)" }
            input id="reference" name="reference" value=(f.reference) readonly[checked];
            @if checked { p { "To change anything, " a href="/ui/initiate" { "start again" } "." } }
            button type="submit" name="action" value="check" { "Check: would it be allowed?" }
            @if checked {
                " "
                button type="submit" name="action" value="request" id="request-button" { "Request this withdrawal" }
            }
        }
    }
}

async fn page(
    svc: &Service,
    who: &Principal,
    csrf: &str,
    f: &Withdrawal,
    verdict: Option<Markup>,
    checked: bool,
) -> Result<String, Failed> {
    let wallets = wallets(svc, who).await?;
    if wallets.is_empty() {
        return Err(Failed::Page(
            StatusCode::FORBIDDEN,
            pages::message("Initiate", "Your roles initiate no transfers."),
        ));
    }
    let body = html! {
        p { "Checked first against the policy in force (nothing is created), then requested: approvers see it decoded from its intent." }
        @if let Some(v) = verdict { (v) }
        (form(f, &wallets, csrf, checked))
    };
    Ok(pages::layout(
        "Initiate a withdrawal",
        Some(who),
        csrf,
        body,
    ))
}

pub(super) async fn show(State(svc): State<Service>, Reader { who, csrf }: Reader) -> Response {
    answer(page(&svc, &who, &csrf, &Withdrawal::default(), None, false).await)
}

pub(super) async fn submit(
    State(svc): State<Service>,
    headers: HeaderMap,
    Form(mut f): Form<Withdrawal>,
) -> Response {
    let who = match signed_in_to_change(&svc, &headers, &f.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let csrf = f.csrf.clone();
    let say = |why: String| html! { p role="alert" class="error" data-fact="verdict" { (why) } };
    let req = match f.request() {
        Ok(r) => r,
        Err(why) => return answer(page(&svc, &who, &csrf, &f, Some(say(why)), false).await),
    };
    let can = match svc.authorize::<perm::InitiateTransfer>(&who, Some(req.wallet)) {
        Ok(c) => c,
        Err(e) => {
            let why = format!("Not allowed: {e}");
            return answer(page(&svc, &who, &csrf, &f, Some(say(why)), false).await);
        }
    };
    if f.action == "request" && !f.idempotency_key.is_empty() {
        return match can.submit_once(&req, Some(&f.idempotency_key)).await {
            Ok(s) => Redirect::to(&format!("/ui/transfers/{}", s.transfer.id)).into_response(),
            Err(e @ (service::ServiceError::Sealed | service::ServiceError::Storage(_))) => {
                unavailable(&e)
            }
            Err(e) => {
                let why = format!("Not requested: {e}");
                answer(page(&svc, &who, &csrf, &f, Some(say(why)), false).await)
            }
        };
    }
    match can.dry_run(&req).await {
        Ok(j) => {
            let mut key = [0u8; 16];
            if getrandom::fill(&mut key).is_err() {
                return unavailable(&service::ServiceError::Invalid("no randomness".into()));
            }
            f.idempotency_key = format!("console-{}", hex::encode(key));
            let verdict = html! {
                section class="card" data-fact="verdict" aria-labelledby="verdict" {
                    h2 id="verdict" { "The policy's answer (version " (j.policy_version.map_or("none".into(), |v| v.to_string())) ")" }
                    pre { (j.decision.to_string()) }
                    p { "Request it below: the request is judged again when it arrives." }
                }
            };
            answer(page(&svc, &who, &csrf, &f, Some(verdict), true).await)
        }
        Err(e @ (service::ServiceError::Sealed | service::ServiceError::Storage(_))) => {
            unavailable(&e)
        }
        Err(e) => {
            let why = format!("Not checked: {e}");
            answer(page(&svc, &who, &csrf, &f, Some(say(why)), false).await)
        }
    }
}
