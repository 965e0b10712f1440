//! Unseal shares: the root key split with Shamir's scheme, each share in a
//! text form that names its keystore and carries a checksum.
//!
//! ```text
//! srshare1-<hex: keystore id (16) | threshold (1) | share (1 + 32) | checksum (4)>
//! ```
//!
//! The checksum (the first 4 bytes of SHA-256 over what precedes it) turns a
//! mistyped or damaged share into an immediate, clear refusal; the keystore
//! id does the same for a share of another keystore. A well-formed share that
//! is simply wrong can only be caught once the threshold is reached: the
//! reconstructed root key then fails to open the keystore.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::secret::Secret32;

const PREFIX: &str = "srshare1-";
const BODY: usize = 16 + 1 + 33;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    #[error("need 2 ≤ threshold ≤ shares ≤ 255, got {threshold} of {shares}")]
    Parameters { threshold: u8, shares: u8 },
    #[error("not an unseal share (expected srshare1-…)")]
    Format,
    #[error("the share is damaged or mistyped (checksum mismatch)")]
    Checksum,
    #[error("the share belongs to another keystore")]
    Foreign,
    #[error("share {0} was already given")]
    Duplicate(u8),
    #[error("the share is not one of this keystore's shares")]
    NotIssued,
    #[error("the shares do not reconstruct a key")]
    Combine,
    #[error("invalid age recipient {0:?}: expected age1…")]
    Recipient(String),
    #[error("encrypting the share failed")]
    Encrypt,
}

/// One share, as a holder keeps it. Zeroized on drop; never printed.
pub struct UnsealShare(Zeroizing<String>);

impl UnsealShare {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_text(s: &str) -> Self {
        UnsealShare(Zeroizing::new(s.trim().to_owned()))
    }
}

impl fmt::Debug for UnsealShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnsealShare(<redacted>)")
    }
}

impl UnsealShare {
    /// The share encrypted to one holder's age X25519 public key (`age1…`),
    /// ASCII-armoured: only that holder can read it (`age -d -i key.txt`).
    pub fn encrypt_to(&self, recipient: &str) -> Result<String, ShareError> {
        let r: age::x25519::Recipient = recipient
            .trim()
            .parse()
            .map_err(|_| ShareError::Recipient(recipient.to_owned()))?;
        let mut line = Zeroizing::new(self.as_str().to_owned());
        line.push('\n');
        age::encrypt_and_armor(&r, line.as_bytes()).map_err(|_| ShareError::Encrypt)
    }
}

/// Splits `root` into `shares` shares, any `threshold` of which rebuild it.
pub fn split(
    keystore: [u8; 16],
    root: &Secret32,
    threshold: u8,
    shares: u8,
) -> Result<Vec<UnsealShare>, ShareError> {
    if threshold < 2 || shares < threshold || shares == 255 {
        return Err(ShareError::Parameters { threshold, shares });
    }
    let dealer = blahaj::Sharks(threshold).dealer(root.expose());
    Ok(dealer
        .take(usize::from(shares))
        .map(|share| {
            let mut body = Zeroizing::new(Vec::with_capacity(BODY + 4));
            body.extend_from_slice(&keystore);
            body.push(threshold);
            let mut raw: Vec<u8> = Vec::from(&share);
            body.extend_from_slice(&raw);
            raw.zeroize();
            let sum = Sha256::digest(&body[..]);
            body.extend_from_slice(&sum[..4]);
            UnsealShare(Zeroizing::new(format!(
                "{PREFIX}{}",
                hex::encode(&body[..])
            )))
        })
        .collect())
}

/// A decoded share: which keystore, what threshold, and the point.
struct Decoded {
    keystore: [u8; 16],
    threshold: u8,
    point: Zeroizing<Vec<u8>>,
}

fn decode(share: &UnsealShare) -> Result<Decoded, ShareError> {
    let hexed = share
        .as_str()
        .strip_prefix(PREFIX)
        .ok_or(ShareError::Format)?;
    let bytes = Zeroizing::new(hex::decode(hexed).map_err(|_| ShareError::Format)?);
    if bytes.len() != BODY + 4 {
        return Err(ShareError::Format);
    }
    let (body, sum) = bytes.split_at(BODY);
    if Sha256::digest(body)[..4] != *sum {
        return Err(ShareError::Checksum);
    }
    let mut keystore = [0u8; 16];
    keystore.copy_from_slice(&body[..16]);
    Ok(Decoded {
        keystore,
        threshold: body[16],
        point: Zeroizing::new(body[17..].to_vec()),
    })
}

/// A share's tag, kept by the server when the shares are made: SHA-256 of
/// a domain label and the share's bytes (keystore id, threshold, point).
/// With fewer shares than the threshold, each point is uniformly random, so
/// a tag tells nothing useful about its share; it lets a sealed server
/// refuse a well-formed share it never issued before the share touches the
/// reconstruction or takes a real holder's index.
pub type ShareTag = [u8; 32];

/// The tag of `share`, keyed by its index.
pub fn share_tag(share: &UnsealShare) -> Result<(u8, ShareTag), ShareError> {
    let d = decode(share)?;
    let index = d.point.first().copied().ok_or(ShareError::Format)?;
    Ok((index, tag_of(&d)))
}

fn tag_of(d: &Decoded) -> ShareTag {
    let mut h = Sha256::new();
    h.update(b"strongroom/share-tag/v1");
    h.update(d.keystore);
    h.update([d.threshold]);
    h.update(&d.point[..]);
    h.finalize().into()
}

/// Where an unseal stands: shares are given one at a time, by different people.
pub struct Unseal {
    keystore: [u8; 16],
    threshold: u8,
    given: Vec<Decoded>,
    /// The tags of the shares issued, by index (none for a keystore made
    /// before tags were kept: then any well-formed share is taken).
    tags: Option<std::collections::BTreeMap<u8, ShareTag>>,
    /// SHA-256 of the token given to whoever gave the first share: they
    /// may start over; nobody else without authority may.
    starter: Option<[u8; 32]>,
}

impl fmt::Debug for Unseal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unseal({}/{})", self.given.len(), self.threshold)
    }
}

/// The outcome of giving one share.
#[derive(Debug)]
pub enum Progress {
    /// More shares are needed: `have` of `need`.
    Partial { have: u8, need: u8 },
    /// The threshold is reached: the candidate root key. The caller checks
    /// it by opening the keystore with it.
    Complete(Secret32),
}

impl Unseal {
    pub fn new(keystore: [u8; 16], threshold: u8) -> Self {
        Unseal {
            keystore,
            threshold,
            given: Vec::new(),
            tags: None,
            starter: None,
        }
    }

    /// An unseal that takes only the shares whose tags were kept.
    pub fn with_tags(
        keystore: [u8; 16],
        threshold: u8,
        tags: std::collections::BTreeMap<u8, ShareTag>,
    ) -> Self {
        Unseal {
            tags: Some(tags),
            ..Unseal::new(keystore, threshold)
        }
    }

    /// Takes only the shares whose tags these are (from now on).
    pub fn set_tags(&mut self, tags: std::collections::BTreeMap<u8, ShareTag>) {
        self.tags = Some(tags);
    }

    /// Remembers (the hash of) the token handed to the first share's holder.
    pub fn set_starter(&mut self, token_hash: [u8; 32]) {
        self.starter = Some(token_hash);
    }

    /// Whether `token_hash` is the first share holder's token.
    pub fn started_by(&self, token_hash: &[u8; 32]) -> bool {
        self.starter.as_ref() == Some(token_hash)
    }

    /// Shares given so far and shares needed.
    pub fn progress(&self) -> (u8, u8) {
        (self.given.len() as u8, self.threshold)
    }

    /// Discards every share given so far (and the starter's token).
    pub fn reset(&mut self) {
        self.given.clear();
        self.starter = None;
    }

    /// Takes one share. A refused share changes nothing. On reaching the
    /// threshold the shares are combined and forgotten.
    pub fn give(&mut self, share: &UnsealShare) -> Result<Progress, ShareError> {
        let d = decode(share)?;
        if d.keystore != self.keystore || d.threshold != self.threshold {
            return Err(ShareError::Foreign);
        }
        let index = d.point.first().copied().ok_or(ShareError::Format)?;
        // Before the duplicate check: a stranger learns nothing of which
        // indices were given, and takes none of them.
        if let Some(tags) = &self.tags
            && tags.get(&index) != Some(&tag_of(&d))
        {
            return Err(ShareError::NotIssued);
        }
        if self.given.iter().any(|g| g.point.first() == Some(&index)) {
            return Err(ShareError::Duplicate(index));
        }
        self.given.push(d);
        let have = self.given.len() as u8;
        if have < self.threshold {
            return Ok(Progress::Partial {
                have,
                need: self.threshold,
            });
        }
        let shares: Result<Vec<blahaj::Share>, _> = self
            .given
            .drain(..)
            .map(|g| blahaj::Share::try_from(&g.point[..]))
            .collect();
        let shares = shares.map_err(|_| ShareError::Combine)?;
        self.starter = None;
        let secret = Zeroizing::new(
            blahaj::Sharks(self.threshold)
                .recover(&shares)
                .map_err(|_| ShareError::Combine)?,
        );
        let mut root: [u8; 32] = secret[..].try_into().map_err(|_| ShareError::Combine)?;
        Ok(Progress::Complete(Secret32::from_bytes(&mut root)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 16] = [7; 16];

    fn root() -> Secret32 {
        Secret32::from_bytes(&mut [42; 32])
    }

    fn complete(p: Progress) -> Secret32 {
        match p {
            Progress::Complete(s) => s,
            Progress::Partial { have, need } => panic!("only {have}/{need}"),
        }
    }

    #[test]
    fn any_three_of_five_rebuild_the_root() {
        let shares = split(ID, &root(), 3, 5).unwrap();
        assert_eq!(shares.len(), 5);
        for pick in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
            let mut u = Unseal::new(ID, 3);
            assert!(matches!(
                u.give(&shares[pick[0]]).unwrap(),
                Progress::Partial { have: 1, need: 3 }
            ));
            assert!(matches!(
                u.give(&shares[pick[1]]).unwrap(),
                Progress::Partial { have: 2, need: 3 }
            ));
            assert_eq!(
                complete(u.give(&shares[pick[2]]).unwrap()).expose(),
                root().expose()
            );
            assert_eq!(u.progress(), (0, 3));
        }
    }

    #[test]
    fn a_forged_share_is_refused_before_it_takes_an_index() {
        let shares = split(ID, &root(), 3, 5).unwrap();
        let tags = shares.iter().map(|s| share_tag(s).unwrap()).collect();
        // Well formed, this keystore's id and threshold, a real index: not issued.
        let forged = split(ID, &Secret32::from_bytes(&mut [9; 32]), 3, 5).unwrap();
        let mut u = Unseal::with_tags(ID, 3, tags);
        u.set_starter([1; 32]);
        assert_eq!(u.give(&forged[0]).unwrap_err(), ShareError::NotIssued);
        assert_eq!(u.progress(), (0, 3));
        u.give(&shares[0]).unwrap();
        // Even once index 1 is given, a forgery of it says only "not issued".
        assert_eq!(u.give(&forged[0]).unwrap_err(), ShareError::NotIssued);
        assert_eq!(u.give(&shares[0]).unwrap_err(), ShareError::Duplicate(1));
        assert!(u.started_by(&[1; 32]) && !u.started_by(&[2; 32]));
        u.give(&shares[3]).unwrap();
        assert_eq!(
            complete(u.give(&shares[4]).unwrap()).expose(),
            root().expose()
        );
        assert!(!u.started_by(&[1; 32]), "a new round has no starter");
    }

    #[test]
    fn bad_shares_are_refused_and_change_nothing() {
        let shares = split(ID, &root(), 3, 5).unwrap();
        let other = split([8; 16], &root(), 3, 5).unwrap();
        let mut u = Unseal::new(ID, 3);
        u.give(&shares[0]).unwrap();

        assert_eq!(u.give(&shares[0]).unwrap_err(), ShareError::Duplicate(1));
        assert_eq!(u.give(&other[1]).unwrap_err(), ShareError::Foreign);
        assert_eq!(
            u.give(&UnsealShare::from_text("hello")).unwrap_err(),
            ShareError::Format
        );
        let mut damaged = shares[1].as_str().to_owned();
        let last = damaged.pop().unwrap();
        damaged.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            u.give(&UnsealShare::from_text(&damaged)).unwrap_err(),
            ShareError::Checksum
        );
        assert_eq!(u.progress(), (1, 3));

        u.reset();
        assert_eq!(u.progress(), (0, 3));
    }

    #[test]
    fn fewer_than_threshold_never_complete() {
        let shares = split(ID, &root(), 4, 6).unwrap();
        let mut u = Unseal::new(ID, 4);
        for s in &shares[..3] {
            assert!(matches!(u.give(s).unwrap(), Progress::Partial { .. }));
        }
    }

    #[test]
    fn shares_encrypt_to_their_holder_only() {
        let holder = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let share = &split(ID, &root(), 2, 2).unwrap()[0];
        let armored = share.encrypt_to(&holder.to_public().to_string()).unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!armored.contains(&share.as_str()[9..30]));
        let plain = age::decrypt(&holder, armored.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(plain).unwrap().trim(), share.as_str());
        assert!(age::decrypt(&other, armored.as_bytes()).is_err());
        assert!(matches!(
            share.encrypt_to("age1nope"),
            Err(ShareError::Recipient(_))
        ));
    }

    #[test]
    fn parameters_are_checked_and_shares_redacted() {
        assert!(split(ID, &root(), 1, 3).is_err());
        assert!(split(ID, &root(), 4, 3).is_err());
        let s = &split(ID, &root(), 2, 2).unwrap()[0];
        assert_eq!(format!("{s:?}"), "UnsealShare(<redacted>)");
    }
}
