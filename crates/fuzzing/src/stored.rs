//! What comes back from storage kept elsewhere: a backup's head and its
//! signed manifest (the first byte says which: 0 a whole head, anything
//! else the manifest's JSON alone).

use sha2::Digest as _;

use audit::backup::{Manifest, head_bytes, read_head};

use crate::known;

/// A backup head: what reads re-encodes to the same bytes and leaves the
/// rest; only the manifest the audit key signed verifies under it; a
/// manifest that parses re-serialises stably, and its check never panics.
pub fn backup_manifest(data: &[u8]) {
    let Some((&kind, data)) = data.split_first() else {
        return;
    };
    if kind != 0 {
        manifest(data);
        return;
    }
    let mut r = data;
    let Ok((text, sig)) = read_head(&mut r) else {
        return;
    };
    let used = data.len() - r.len();
    let again = head_bytes(&text, &sig).expect("a head read is a head");
    assert_eq!(again, data[..used], "the head re-encodes as read");
    let digest: [u8; 32] = sha2::Sha256::digest(&text).into();
    if known::audit_key()
        .public()
        .verify_backup(&digest, &sig)
        .is_ok()
    {
        assert_eq!(
            (text.clone(), sig),
            known::signed_backup_manifest(),
            "a manifest nobody signed"
        );
    }
    manifest(&text);
}

fn manifest(text: &[u8]) {
    let Ok(m) = Manifest::parse(text) else {
        return;
    };
    let _ = m.check();
    let once = m.to_bytes().expect("a parsed manifest serialises");
    let back = Manifest::parse(&once).expect("its own bytes parse");
    assert_eq!(back, m, "reads back as itself");
    assert_eq!(back.to_bytes().ok(), Some(once), "one spelling");
}
