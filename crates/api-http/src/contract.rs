//! The OpenAPI document as a contract, completed from what every route
//! shares: how a caller proves who it is (a signed request or a session
//! cookie), and the error answers every operation can give — each with the
//! error body and its stable codes. The handlers declare what is theirs
//! (their success and their own refusals); this adds the rest, so that a
//! validator and a generated client see every status the server may send.

use serde_json::{Map, Value, json};

use crate::auth::{
    CSRF_HEADER, KEY_HEADER, NONCE_HEADER, SESSION_COOKIE, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};

/// Operations anyone may call (no credentials).
const PUBLIC: &[(&str, &str)] = &[
    ("get", "/v1/health"),
    ("get", "/v1/ready"),
    ("get", "/v1/status"),
    ("get", "/v1/sys/seal-status"),
    ("post", "/v1/sys/unseal"),
    ("post", "/v1/auth/login"),
];

/// What each error status means, with the codes its body may carry.
fn meaning(status: &str) -> Option<&'static str> {
    Some(match status {
        "400" => {
            "The request is refused as it is (`code`: `bad_request`, `invalid_request`, \
             `invalid_body`, `invalid_query`, `json_too_deep`, `not_configured`, `approval_expired`, \
             `bad_approval_signature`, `signature_required`, …); nothing changed."
        }
        "401" => {
            "Not authenticated (`unauthenticated`, `bad_signature`, `stale_request`, \
             `replayed_request`, `malformed_auth`, `key_inactive`, `no_session`, \
             `invalid_credentials`, `totp_required`, `signature_upgrade_required`)."
        }
        "403" => {
            "Authenticated, but not allowed (`forbidden`, `csrf`, `mfa_required`, \
             `not_an_approver`, `own_transfer`, `no_approver_key`)."
        }
        "404" => "No such resource, or not in the caller's scope (`not_found`).",
        "405" => "Method not allowed here (`method_not_allowed`).",
        "408" => "The request took too long (`timeout`).",
        "409" => {
            "Refused by the state of things (`conflict`, `frozen`, `insufficient_funds`, \
             `idempotency_key_reused`, `not_awaiting_vote`, `already_voted`, `key_not_usable`, \
             `not_approved`, `signers_refused`, `not_replaceable`, `fee_refused`, \
             `governance_in_force`, `key_not_backed_up`); nothing changed."
        }
        "413" => "The body is too large (`payload_too_large`).",
        "415" => "The body is not JSON (`unsupported_media_type`).",
        "422" => "The body does not parse as this operation's (`invalid_body`).",
        "429" => "Rate limited (`rate_limited`); `Retry-After` says when to come back.",
        "500" => "A fault of the server (`internal`); nothing is said of the cause.",
        "503" => {
            "Not serving this now (`sealed`, `database_unavailable`, `node_unavailable`, \
             `governance_not_configured`, `contention`: it raced another request and changed \
             nothing); `Retry-After` may say when to come back."
        }
        _ => return None,
    })
}

fn success(status: &str) -> &'static str {
    match status {
        "201" => "Created.",
        "204" => "Done; no body.",
        _ => "OK.",
    }
}

/// Completes `doc` (the document the handlers declare) in place.
pub(crate) fn complete(doc: &mut Value) {
    if let Some(c) = doc.as_object_mut().and_then(|d| {
        d.entry("components")
            .or_insert_with(|| json!({}))
            .as_object_mut()
    }) {
        c.insert("securitySchemes".into(), schemes());
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            operation(method, path, op);
        }
    }
}

fn schemes() -> Value {
    let header = |name: &str, what: &str| json!({ "type": "apiKey", "in": "header", "name": name, "description": what });
    json!({
        "apiKey": header(KEY_HEADER, "The API key's id. A signed request carries this and the \
            three headers below: `strongroom-request-v2` signs, with the key's Ed25519 key, the \
            method, path and query, body hash, timestamp, nonce and Idempotency-Key \
            (docs/FORMATS.md)."),
        "requestTimestamp": header(TIMESTAMP_HEADER, "Milliseconds since 1970; within 30 s of \
            the server's clock."),
        "requestNonce": header(NONCE_HEADER, "Unique per key; a replay is refused."),
        "requestSignature": header(SIGNATURE_HEADER, "Base64 (standard, padded) of the \
            Ed25519 signature."),
        "session": {
            "type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
            "description": format!("The console's session (`POST /v1/auth/login`); requests \
                that change anything also send the `{CSRF_HEADER}` header with the token the \
                login answered.")
        }
    })
}

fn operation(method: &str, path: &str, op: &mut Map<String, Value>) {
    let public = PUBLIC.iter().any(|(m, p)| *m == method && *p == path);
    op.insert(
        "security".into(),
        if public {
            json!([])
        } else {
            json!([
                { "apiKey": [], "requestTimestamp": [], "requestNonce": [], "requestSignature": [] },
                { "session": [] }
            ])
        },
    );
    let Some(responses) = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    else {
        return;
    };
    // Credentials presented to a public operation are checked too (and
    // refused with 401 or 403 when they are bad).
    let mut errors = vec!["400", "401", "403", "429", "500", "503"];
    if path.contains('{') {
        errors.push("404");
    }
    if method == "post" {
        errors.extend(["409", "413", "415", "422"]);
    }
    for status in errors {
        responses.entry(status).or_insert_with(|| json!({}));
    }
    for (status, r) in responses.iter_mut() {
        let Some(r) = r.as_object_mut() else { continue };
        let error = meaning(status);
        if !r.contains_key("description") || r["description"] == "" {
            r.insert(
                "description".into(),
                json!(error.unwrap_or_else(|| success(status))),
            );
        }
        if error.is_some() && !r.contains_key("content") {
            r.insert(
                "content".into(),
                json!({ "application/json": {
                    "schema": { "$ref": "#/components/schemas/ErrorBody" } } }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_response_gets_a_description_and_errors_their_body() {
        let mut doc = json!({ "paths": { "/v1/x/{id}": { "post": { "responses": {
            "201": { "content": {} }, "409": {} } } } } });
        complete(&mut doc);
        let op = &doc["paths"]["/v1/x/{id}"]["post"];
        assert_eq!(op["responses"]["201"]["description"], "Created.");
        for s in [
            "400", "401", "403", "404", "409", "413", "415", "422", "429", "503",
        ] {
            assert!(op["responses"][s]["description"].as_str().is_some(), "{s}");
            assert_eq!(
                op["responses"][s]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody"
            );
        }
        assert_eq!(op["security"].as_array().map(Vec::len), Some(2));
        assert!(doc["components"]["securitySchemes"]["session"].is_object());
    }
}
