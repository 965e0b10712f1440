//! The signer nodes behind the [`keys::Signer`] seam, for what that seam
//! can carry: Ed25519 messages (where the nodes' policy allows raw
//! messages) — and refusals of bare ECDSA and BIP-340 digests, which the
//! nodes sign only inside transactions they check (the server passes
//! those through `service::threshold` with their [`crate::cosign::Subject`]).
//! Used to run the keys conformance suite against real nodes.

use std::collections::HashMap;
use std::sync::Mutex;

use keys::{Algorithm, BoxFuture, KeyError, KeyRef, PublicKey, SignRequest, Signature};

use crate::cluster::Cluster;
use crate::cosign::Subject;
use crate::dkg::GroupPublic;
use crate::{Ed25519, Suite, Taproot};

/// Keys made by a cluster's nodes for one wallet.
#[derive(Debug)]
pub struct ThresholdSigner {
    cluster: Cluster,
    threshold: u16,
    wallet: String,
    keys: Mutex<HashMap<String, Made>>,
}

#[derive(Debug, Clone)]
enum Made {
    Ed25519(Box<GroupPublic<Ed25519>>, [u8; 32]),
    Taproot([u8; 32]),
    Ecdsa([u8; 33]),
}

impl ThresholdSigner {
    pub fn new(cluster: Cluster, threshold: u16, wallet: &str) -> ThresholdSigner {
        ThresholdSigner {
            cluster,
            threshold,
            wallet: wallet.to_owned(),
            keys: Mutex::default(),
        }
    }

    fn made(&self, key: &KeyRef) -> Result<Made, KeyError> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key.0)
            .cloned()
            .ok_or_else(|| KeyError::UnknownKey(key.clone()))
    }
}

fn backend(e: impl std::fmt::Display) -> KeyError {
    KeyError::Backend(e.to_string())
}

impl keys::Signer for ThresholdSigner {
    fn backend(&self) -> &'static str {
        "threshold"
    }

    fn generate(&self, algorithm: Algorithm) -> BoxFuture<'_, Result<KeyRef, KeyError>> {
        Box::pin(async move {
            let mut id = [0u8; 12];
            getrandom::fill(&mut id).map_err(|_| KeyError::Random)?;
            let id = format!("conf-{}", hex::encode(id));
            let t = self.threshold;
            let made = match algorithm {
                Algorithm::Ed25519 => {
                    let k = self
                        .cluster
                        .generate(Ed25519::NAME, &id, &self.wallet, t)
                        .await
                        .map_err(backend)?;
                    let group = GroupPublic::<Ed25519>::from_bytes(&k.public).map_err(backend)?;
                    Made::Ed25519(Box::new(group), k.group_key)
                }
                Algorithm::SchnorrBip340 => {
                    let k = self
                        .cluster
                        .generate(Taproot::NAME, &id, &self.wallet, t)
                        .await
                        .map_err(backend)?;
                    Made::Taproot(k.group_key)
                }
                Algorithm::EcdsaSecp256k1 => Made::Ecdsa(
                    self.cluster
                        .ecdsa_generate(&id, &self.wallet, t)
                        .await
                        .map_err(backend)?,
                ),
            };
            self.keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.clone(), made);
            Ok(KeyRef(id))
        })
    }

    fn public_key<'a>(&'a self, key: &'a KeyRef) -> BoxFuture<'a, Result<PublicKey, KeyError>> {
        Box::pin(async move {
            Ok(match self.made(key)? {
                Made::Ed25519(_, k) => PublicKey::Ed25519(k),
                // The output key: no one holds an internal key.
                Made::Taproot(k) => PublicKey::XOnly(k),
                Made::Ecdsa(k) => PublicKey::Secp256k1(k),
            })
        })
    }

    fn sign<'a>(
        &'a self,
        key: &'a KeyRef,
        request: SignRequest<'a>,
    ) -> BoxFuture<'a, Result<Signature, KeyError>> {
        Box::pin(async move {
            let made = self.made(key)?;
            match (&made, request) {
                (Made::Ed25519(group, _), SignRequest::Ed25519Message(m)) => {
                    let subject = Subject::Raw {
                        message: hex::encode(m),
                    };
                    let sig = self
                        .cluster
                        .sign(&key.0, group, m, &subject)
                        .await
                        .map_err(backend)?;
                    Ok(Signature::Ed25519(sig))
                }
                (
                    Made::Taproot(_) | Made::Ecdsa(_),
                    r @ (SignRequest::EcdsaDigest(_) | SignRequest::SchnorrDigest { .. }),
                ) => Err(KeyError::Unsupported(r.algorithm())),
                (m, r) => Err(KeyError::WrongAlgorithm {
                    key: key.clone(),
                    actual: match m {
                        Made::Ed25519(..) => Algorithm::Ed25519,
                        Made::Taproot(_) => Algorithm::SchnorrBip340,
                        Made::Ecdsa(_) => Algorithm::EcdsaSecp256k1,
                    },
                    requested: r.algorithm(),
                }),
            }
        })
    }
}
