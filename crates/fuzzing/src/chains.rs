//! What comes back from outside to be broadcast: a PSBT an offline signer
//! returns, and a signed Ethereum transaction (an offline signature, or a
//! node's answer).

use bitcoin::Psbt;

use crate::known;

/// A PSBT handed in for the fixed plan (as `cold` accepts an offline
/// signature): whatever it carries, a transaction accepted is exactly the
/// plan — its inputs, its outputs — and verifies under Bitcoin Core's
/// interpreter (inside `accept_signed`). Combining it with the server's
/// own copy, and reading what a key must sign in it, never panic.
pub fn psbt(data: &[u8]) {
    let Ok(theirs) = Psbt::deserialize(data) else {
        return;
    };
    let plan = known::btc_plan();
    let _ = chain_btc::prevouts_of(&theirs);
    let _ = chain_btc::tasks_for_key(&theirs, &[2; 33]);
    if let Ok(mut ours) = plan.psbt() {
        let _ = chain_btc::combine(&mut ours, theirs.clone());
    }
    let Ok(tx) = chain_btc::accept_signed(plan, theirs) else {
        return;
    };
    assert_eq!(plan.matches(&tx), Ok(true), "accepted, yet not the plan");
    let spent: Vec<_> = tx.input.iter().map(|i| i.previous_output).collect();
    let planned: Vec<_> = plan.inputs.iter().map(|u| u.outpoint).collect();
    assert_eq!(spent, planned, "accepted, yet spends other outputs");
}

/// A signed transaction handed in for the fixed approved payment, checked
/// as the server checks it (decoded, the same plan from the same sender,
/// finished with its own signature, byte for byte what was handed in):
/// only the one transaction its sender signed passes; and whatever
/// decodes, re-encoded from its parts, decodes to the same.
pub fn eth_tx(data: &[u8]) {
    let Ok(d) = chain_eth::decode(data) else {
        return;
    };
    let approved = known::eth_approved();
    if d.plan == *approved.plan() && d.from == approved.from() {
        let signed = approved.finish(d.signature);
        if let Ok(s) = &signed
            && s.raw == data
        {
            assert_eq!(
                data,
                known::signed_eth().raw,
                "a second transaction for one approval"
            );
        }
    }
    if let Ok(again) = d.plan.into_signed(d.signature, d.from) {
        let r = chain_eth::decode(&again.raw);
        assert!(
            r.as_ref()
                .is_ok_and(|r| r.plan == d.plan && r.from == d.from && r.hash == again.hash),
            "{r:?}"
        );
    }
}
