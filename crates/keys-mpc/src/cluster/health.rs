//! What operators are shown of the signer nodes: whether each answered
//! its last call, a probe that asks them all, and the aborts blamed on a
//! party.

use super::Cluster;
use crate::wire::Request;

impl Cluster {
    /// Aborted signing sessions blamed on a party since start.
    pub fn blamed_aborts(&self) -> u64 {
        self.blamed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks every signer who it is (each answer, or its absence, is kept
    /// for [`Cluster::reachability`]).
    pub async fn probe(&self) {
        let requests = self
            .signers
            .iter()
            .map(|s| (s.clone(), Request::Info))
            .collect();
        self.fan_out(requests).await;
    }

    /// The signer protocol each node spoke at its last hello (`None`: no
    /// connection yet).
    pub fn protocols(&self) -> Vec<(u16, Option<u16>)> {
        self.links
            .protocols
            .iter()
            .map(|(i, p)| {
                let p = p.load(std::sync::atomic::Ordering::Relaxed);
                (*i, (p > 0).then_some(p))
            })
            .collect()
    }

    /// Whether each signer answered its last call (`None`: not called yet).
    pub fn reachability(&self) -> Vec<(u16, Option<bool>)> {
        self.links
            .answered
            .iter()
            .map(|(i, a)| {
                let known = match a.load(std::sync::atomic::Ordering::Relaxed) {
                    1 => Some(true),
                    2 => Some(false),
                    _ => None,
                };
                (*i, known)
            })
            .collect()
    }
}
