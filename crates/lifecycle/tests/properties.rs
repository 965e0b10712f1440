//! Properties of the machine over random event sequences: nothing leaves
//! a final state, nothing is signed twice, and a reservation is given back
//! before anything can be planned again.

mod common;

use common::events;
use lifecycle::{Change, Effect, Event, State, step};
use proptest::prelude::*;

/// What a walk of the machine has done so far.
#[derive(Default)]
struct Walk {
    /// A `Sign` effect was asked for and neither signed nor given back.
    reserved: bool,
    /// The transfer's transaction was signed.
    signed: bool,
}

impl Walk {
    /// Checks one step taken from `from` on `event`.
    fn take(&mut self, from: State, event: Event) -> Result<State, TestCaseError> {
        let Ok(s) = step(from, event) else {
            // An event a state does not take changes nothing.
            return Ok(from);
        };
        prop_assert!(!from.is_final(), "{from} took {event:?}");
        let finishes = s.changes.iter().filter(|c| **c == Change::Finish).count();
        prop_assert_eq!(finishes, usize::from(s.to.is_final()), "{:?}", s);
        if s.to.is_final() {
            prop_assert!(s.effects.contains(&Effect::SettleDependents), "{:?}", s);
        }
        let released = s.changes.contains(&Change::Release);
        if released {
            prop_assert!(self.reserved && !self.signed, "{from} -{event:?}-> {s:?}");
            self.reserved = false;
        }
        if s.effects.contains(&Effect::Sign) {
            // Planned again only once the last reservation went back,
            // and never after a signature.
            prop_assert!(!self.reserved && !self.signed, "{from} -{event:?}-> {s:?}");
            self.reserved = true;
        }
        if event == Event::Signed {
            prop_assert!(self.reserved && !self.signed, "signed twice: {from}");
            self.signed = true;
            self.reserved = false;
        }
        // Leaving the states that hold a reservation, by any way but a
        // signature or the chain, gives it back.
        if matches!(from, State::Signing | State::AwaitingSignature)
            && !s.to.is_on_chain()
            && event != Event::Signed
        {
            prop_assert!(released, "{from} -{event:?}-> {s:?} keeps its reservation");
        }
        // Once signed, a transfer stays with its transaction or ends.
        if self.signed {
            prop_assert!(
                s.to.is_on_chain() || s.to.is_final(),
                "{from} -> {:?}",
                s.to
            );
            prop_assert!(
                !matches!(s.to, State::Signing | State::AwaitingSignature),
                "{from} -> {:?} after signing",
                s.to
            );
        }
        Ok(s.to)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Any sequence of events, legal or not, from a new transfer.
    #[test]
    fn no_sequence_leaves_a_final_state_or_signs_twice(
        seq in prop::collection::vec(prop::sample::select(events()), 0..80)
    ) {
        let mut walk = Walk::default();
        let mut at = State::Submitted;
        let mut ended = None;
        for event in seq {
            let next = walk.take(at, event)?;
            if let Some(end) = ended {
                prop_assert_eq!(next, end, "left the final state {}", end);
            }
            if next.is_final() {
                ended = Some(next);
            }
            at = next;
        }
    }

    /// From any state, with any event: a final state takes nothing, and
    /// a state's name reads back as itself.
    #[test]
    fn final_states_take_nothing(
        from in prop::sample::select(State::ALL.to_vec()),
        event in prop::sample::select(events()),
    ) {
        if from.is_final() {
            prop_assert!(step(from, event).is_err());
        }
        prop_assert_eq!(from.as_str().parse::<State>(), Ok(from));
    }
}
