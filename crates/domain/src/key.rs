//! The key inventory's vocabulary: purposes, algorithms, backends and the
//! NIST SP 800-57 lifecycle states with the transitions allowed between them.

use std::fmt;
use std::str::FromStr;

/// One purpose per key: a key that signs transfers never signs approvals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    TransferSigning,
    Approval,
    Audit,
    BackupWrapping,
}

/// The signature scheme a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    EcdsaSecp256k1,
    SchnorrBip340,
    Ed25519,
}

/// Where the key material lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyBackend {
    /// Encrypted in the database under the sealed keystore.
    Keystore,
    /// Inside an HSM, reached over PKCS#11.
    Pkcs11,
    /// Never whole anywhere: shares held by separate signer nodes, which
    /// sign together (FROST, CGGMP24) after checking each request.
    Threshold,
    /// Outside the server altogether (a cold key, a hardware wallet): only
    /// its public key is here; it signs offline, through a PSBT handed out
    /// and brought back. The server never signs with it.
    External,
    /// An on-chain multisig account (P2WSH `sortedmulti`): no key of its
    /// own; its cosigners (other keys of any backend) each sign.
    Multisig,
}

/// NIST SP 800-57 key states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    PreActive,
    Active,
    Suspended,
    Deactivated,
    Compromised,
    Destroyed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyVocabError {
    #[error("unknown {kind} {given:?}")]
    Unknown { kind: &'static str, given: String },
    #[error("a key cannot go from {from} to {to}")]
    Transition { from: KeyState, to: KeyState },
}

impl KeyState {
    /// Whether `self → to` is allowed. Destroyed is final; compromise can be
    /// declared from any living state; a deactivated key never signs again.
    pub fn check_transition(self, to: KeyState) -> Result<(), KeyVocabError> {
        use KeyState::*;
        let ok = matches!(
            (self, to),
            (PreActive, Active)
                | (PreActive, Destroyed)
                | (Active, Suspended)
                | (Suspended, Active)
                | (Active | Suspended, Deactivated)
                | (PreActive | Active | Suspended | Deactivated, Compromised)
                | (Deactivated | Compromised, Destroyed)
        );
        if ok {
            Ok(())
        } else {
            Err(KeyVocabError::Transition { from: self, to })
        }
    }

    /// Only active keys sign.
    pub fn may_sign(self) -> bool {
        self == KeyState::Active
    }
}

macro_rules! names {
    ($ty:ident, $kind:literal, $($variant:ident => $name:literal),* $(,)?) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = KeyVocabError;

            fn from_str(s: &str) -> Result<Self, KeyVocabError> {
                match s {
                    $($name => Ok($ty::$variant),)*
                    _ => Err(KeyVocabError::Unknown { kind: $kind, given: s.to_owned() }),
                }
            }
        }
    };
}

names!(KeyPurpose, "key purpose",
    TransferSigning => "transfer-signing",
    Approval => "approval",
    Audit => "audit",
    BackupWrapping => "backup-wrapping",
);
names!(KeyAlgorithm, "key algorithm",
    EcdsaSecp256k1 => "ecdsa-secp256k1",
    SchnorrBip340 => "schnorr-bip340",
    Ed25519 => "ed25519",
);
names!(KeyBackend, "key backend",
    Keystore => "keystore",
    Pkcs11 => "pkcs11",
    Threshold => "threshold",
    External => "external",
    Multisig => "multisig",
);
names!(KeyState, "key state",
    PreActive => "pre-active",
    Active => "active",
    Suspended => "suspended",
    Deactivated => "deactivated",
    Compromised => "compromised",
    Destroyed => "destroyed",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_table() {
        let mut out = Vec::new();
        for &from in KeyState::ALL {
            let to: Vec<&str> = KeyState::ALL
                .iter()
                .filter(|&&to| from.check_transition(to).is_ok())
                .map(|t| t.as_str())
                .collect();
            out.push(format!("{from} -> {}", to.join(", ")));
        }
        expect_test::expect![[r#"
            pre-active -> active, compromised, destroyed
            active -> suspended, deactivated, compromised
            suspended -> active, deactivated, compromised
            deactivated -> compromised, destroyed
            compromised -> destroyed
            destroyed -> "#]]
        .assert_eq(&out.join("\n"));
        assert!(KeyState::Active.may_sign());
        assert!(!KeyState::Suspended.may_sign());
    }

    #[test]
    fn names_round_trip() {
        for &p in KeyPurpose::ALL {
            assert_eq!(p.as_str().parse::<KeyPurpose>().unwrap(), p);
        }
        for &a in KeyAlgorithm::ALL {
            assert_eq!(a.as_str().parse::<KeyAlgorithm>().unwrap(), a);
        }
        for &s in KeyState::ALL {
            assert_eq!(s.as_str().parse::<KeyState>().unwrap(), s);
        }
        assert!("Active".parse::<KeyState>().is_err());
    }
}
