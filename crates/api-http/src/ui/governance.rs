//! Governance in the console (those who govern or oversee, past their
//! second factor, as `GET /v1/proposals`): the freeze button (one click
//! and a confirmation; releasing is a proposal under the admin quorum),
//! the freezes in force, the proposals with their votes, the policy in
//! force with what changed from the version before, and the address book
//! with each entry's cooling-off.

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use domain::{Permission, permits};
use maud::{Markup, html};
use serde::Deserialize;
use service::Service;
use service::governance::{Change, FreezeScope};
use service::identity::{Principal, perm};

use super::pages::{self, Failed};
use super::{Reader, answer, signed_in_to_change, unavailable};

/// Proposals shown.
const PROPOSALS: u32 = 50;

pub(super) async fn show(State(svc): State<Service>, Reader { who, csrf }: Reader) -> Response {
    answer(page(&svc, &who, &csrf).await)
}

/// Lines of `old` and `new`: each kept (' '), removed ('-') or added
/// ('+'), by their longest common subsequence.
fn line_diff<'a>(old: &'a str, new: &'a str) -> Option<Vec<(char, &'a str)>> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // What both share at the start and the end is kept as is; the middle
    // is compared line by line, within a bound on the work.
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a_mid, b_mid) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    if a_mid.len().saturating_mul(b_mid.len()) > MAX_DIFF_CELLS {
        return None;
    }
    let mut out: Vec<(char, &str)> = a[..head].iter().map(|l| (' ', *l)).collect();
    out.extend(lcs_diff(a_mid, b_mid));
    out.extend(a[a.len() - tail..].iter().map(|l| (' ', *l)));
    Some(out)
}

/// Cells of the comparison table a diff may take (4 M: 32 MiB).
const MAX_DIFF_CELLS: usize = 4_000_000;

fn lcs_diff<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(char, &'a str)> {
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push((' ', a[i]));
            (i, j) = (i + 1, j + 1);
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(('-', a[i]));
            i += 1;
        } else {
            out.push(('+', b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| ('-', *l)));
    out.extend(b[j..].iter().map(|l| ('+', *l)));
    out
}

/// A stored policy document (canonical JSON) as indented text to compare.
fn readable(document: &str) -> String {
    serde_json::from_str::<serde_json::Value>(document)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| document.to_owned())
}

/// `ms` from now as "3 h 12 min" (or "usable" once past).
fn countdown(ms: i64) -> String {
    if ms <= 0 {
        return "usable".into();
    }
    let minutes = (ms + 59_999) / 60_000;
    format!("usable in {} h {} min", minutes / 60, minutes % 60)
}

async fn page(svc: &Service, who: &Principal, csrf: &str) -> Result<String, Failed> {
    if crate::governance::overseer(who).is_err() {
        return Err(Failed::Page(
            StatusCode::FORBIDDEN,
            pages::message(
                "Governance",
                "Your roles do not oversee governance, or your second factor is missing.",
            ),
        ));
    }
    let may_freeze = permits(who.grants(), Permission::Freeze, None);
    // Releasing is proposed by those who may freeze.
    let may_propose = may_freeze;
    let freezes = svc.freezes().await?;
    let proposals = svc.proposals(None, PROPOSALS).await?;
    let policy = svc.current_policy().await?;
    let before = match &policy {
        Some(p) if p.version > 1 => Some(
            svc.store()
                .policy(p.version - 1)
                .await
                .map_err(service::ServiceError::from)?,
        ),
        _ => None,
    };
    let book = svc.address_book().await?;
    let now = svc.now().as_millis();
    let diff: Markup = match (&policy, &before) {
        (Some(p), Some(b)) => {
            let (old, new) = (readable(&b.document), readable(&p.document));
            html! {
                h3 { "What changed from version " (b.version) }
                @match line_diff(&old, &new) {
                    Some(lines) => pre class="diff" {
                        @for (mark, line) in lines {
                            @match mark {
                                '+' => ins { "+ " (line) "\n" },
                                '-' => del { "- " (line) "\n" },
                                _ => span { "  " (line) "\n" },
                            }
                        }
                    },
                    None => p { "Too different to compare here: compare the digests " code { (b.digest) } " and " code { (p.digest) } "." },
                }
            }
        }
        (Some(p), None) => html! { pre { (readable(&p.document)) } },
        _ => html! { p { "No policy yet: every transfer is refused." } },
    };
    let body = html! {
        @if may_freeze {
            section aria-labelledby="freeze" class="card" {
                h2 id="freeze" { "Freeze everything" }
                p { "No signature and no broadcast starts once it is placed. Releasing it takes a proposal under the admin quorum." }
                form method="post" action="/ui/governance/freeze" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="reason" { "Why" }
                    input id="reason" name="reason" required;
                    label { input type="checkbox" name="confirm" value="yes" required; " I mean to stop every withdrawal now" }
                    button type="submit" id="freeze-button" class="danger" { "Freeze" }
                }
            }
        }
        section aria-labelledby="freezes" {
            h2 id="freezes" { "Freezes in force" }
            @if freezes.is_empty() { p { "None." } }
            ul {
                @for f in &freezes {
                    li data-freeze=(f.id) {
                        (f.scope) ": " (f.reason) " — by " (f.frozen_by.to_string()) ", " (pages::when(f.frozen_at))
                        @if may_propose {
                            form method="post" action="/ui/governance/release" class="inline" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="freeze" value=(f.id);
                                button type="submit" { "Propose its release" }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="proposals" {
            h2 id="proposals" { "Proposals" }
            table {
                thead { tr { th { "Made" } th { "Change" } th { "By" } th { "State" } th { "Expires" } } }
                tbody {
                    @for p in &proposals {
                        tr data-proposal=(p.id) {
                            td { (pages::when(p.created_at)) }
                            td { (p.summary) }
                            td { (p.proposed_by.to_string()) }
                            td { (p.state) }
                            td { (pages::when(p.expires_at)) }
                        }
                    }
                }
            }
            p { "Admins vote with their signing key: " code { "strongroom approve --proposal <id>" } "." }
        }
        section aria-labelledby="policy" {
            h2 id="policy" {
                "Policy in force"
                @if let Some(p) = &policy { " — version " (p.version) }
            }
            (diff)
        }
        section aria-labelledby="book" {
            h2 id="book" { "Address book" }
            table {
                thead { tr { th { "Label" } th { "Network" } th { "Address" } th { "Usable" } } }
                tbody {
                    @for e in &book {
                        tr {
                            td { (e.label) }
                            td { (e.network) }
                            td { code { (e.address) } }
                            td title=(pages::utc(e.usable_from)) { (countdown(e.usable_from.as_millis() - now)) }
                        }
                    }
                }
            }
        }
    };
    Ok(pages::layout("Governance", Some(who), csrf, body))
}

#[derive(Deserialize)]
pub(super) struct FreezeForm {
    csrf: String,
    reason: String,
    #[serde(default)]
    confirm: String,
}

/// The freeze button: global, at once, with the reason given.
pub(super) async fn freeze(
    State(svc): State<Service>,
    headers: axum::http::HeaderMap,
    Form(f): Form<FreezeForm>,
) -> Response {
    let who = match signed_in_to_change(&svc, &headers, &f.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(can) = svc.authorize::<perm::Freeze>(&who, None) else {
        return (StatusCode::FORBIDDEN, Html(pages::refused())).into_response();
    };
    if f.confirm != "yes" || f.reason.trim().is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Html(pages::message("Not frozen", "Give a reason and confirm.")),
        )
            .into_response();
    }
    match can.freeze(FreezeScope::Global, f.reason.trim()).await {
        Ok(_) => Redirect::to("/ui/governance").into_response(),
        Err(e) => unavailable(&e),
    }
}

#[derive(Deserialize)]
pub(super) struct ReleaseForm {
    csrf: String,
    freeze: String,
}

/// Proposes a freeze's release (the admin quorum decides).
pub(super) async fn release(
    State(svc): State<Service>,
    headers: axum::http::HeaderMap,
    Form(f): Form<ReleaseForm>,
) -> Response {
    let who = match signed_in_to_change(&svc, &headers, &f.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let change = Change::ReleaseFreeze {
        freeze_id: f.freeze,
        cool_down_s: 0,
    };
    match svc.propose(&who, change).await {
        Ok(_) => Redirect::to("/ui/governance").into_response(),
        Err(e @ (service::ServiceError::Storage(_) | service::ServiceError::Sealed)) => {
            unavailable(&e)
        }
        Err(e) => (
            StatusCode::CONFLICT,
            Html(pages::message("Not proposed", &e.to_string())),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_keeps_removes_and_adds_lines() {
        let d = line_diff("a\nb\nc\n", "a\nc\nd\n");
        assert_eq!(
            d,
            Some(vec![(' ', "a"), ('-', "b"), (' ', "c"), ('+', "d")])
        );
        let d = line_diff("x\na\nb\ny\n", "x\nb\na\ny\n");
        assert_eq!(
            d,
            Some(vec![
                (' ', "x"),
                ('-', "a"),
                (' ', "b"),
                ('+', "a"),
                (' ', "y")
            ])
        );
        // Too large to compare: said so, not computed.
        let many: String = (0..3000).map(|i| format!("{i}\n")).collect();
        let other: String = (0..3000).map(|i| format!("-{i}\n")).collect();
        assert_eq!(line_diff(&many, &other), None);
        assert_eq!(countdown(0), "usable");
        assert_eq!(countdown(3_600_000), "usable in 1 h 0 min");
        assert_eq!(countdown(3_600_001), "usable in 1 h 1 min");
    }
}
