//! What approvers and signer nodes read: a transfer's intent as stored and
//! sent to nodes, and an approver's key and signature as handed in.

use domain::TransferIntent;
use policy::{ApprovalSignature, ApproverKey};

use crate::known;

/// An intent's canonical bytes: one decoded is exactly its encoding (no
/// second spelling of an intent, so no second digest for it).
pub fn intent(data: &[u8]) {
    let Ok(i) = TransferIntent::decode_as_written(data) else {
        return;
    };
    assert_eq!(i.canonical_bytes(), data, "a second spelling of {i:?}");
    let again = TransferIntent::decode_as_written(&i.canonical_bytes());
    assert_eq!(again.map(|a| a.digest()), Ok(i.digest()));
}

/// An approver key and an approval signature as text (split at the first
/// line break): each parsed shows as text that parses to itself, and no
/// input verifies for the fixed statement under the fixed key but the
/// one its holder signed.
pub fn approval(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (key_text, sig_text) = text.split_once('\n').unwrap_or((text, ""));
    let key = key_text.parse::<ApproverKey>().ok();
    if let Some(k) = &key {
        assert_eq!(k.to_string().parse::<ApproverKey>().as_ref(), Ok(k));
    }
    let Ok(sig) = sig_text.parse::<ApprovalSignature>() else {
        return;
    };
    assert_eq!(
        sig.to_string().parse::<ApprovalSignature>().as_ref(),
        Ok(&sig)
    );
    let statement = known::statement();
    let rp = known::relying_party();
    for k in key.iter().chain([&known::approver_key()]) {
        let recorded = statement.verify_recorded(k, &sig);
        let cast = statement.verify_by(k, &sig, Some(&rp));
        // Cast (with where it was made) implies recorded.
        assert!(cast.is_err() || recorded.is_ok(), "{cast:?} / {recorded:?}");
        if recorded.is_ok() {
            assert_eq!(
                sig,
                known::approval_signature(),
                "a signature nobody made verifies"
            );
        }
    }
}
