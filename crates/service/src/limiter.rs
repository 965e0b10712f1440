//! Rate limits: token buckets by key, in bounded memory, O(1) per request.
//!
//! A [`Limiter`] remembers at most `capacity` keys (rounded to its 64
//! shards), however many distinct keys callers bring: each shard keeps two
//! generations of buckets, and when the young one is full the old one is
//! forgotten and the young one takes its place. A key untouched for a whole
//! generation of its shard comes back with a full bucket (fail open): a
//! flood of fresh keys cannot grow memory past the bound, and at worst
//! makes the limiter forget other keys' spent buckets early.
//! Shards are chosen with a per-process random seed, so a caller cannot aim
//! its keys at one shard.
//!
//! Keys are addresses ([`address_key`]: an IPv4 address, or the /64 of an
//! IPv6 one, since one host holds a whole /64), digests of secrets or names
//! ([`hashed_key`]), or the one [`LimitKey::Global`] budget. Arithmetic is
//! in integers (one token is [`UNITS_PER_TOKEN`] units) and saturates; the
//! caller passes the time in milliseconds, and time that goes backwards
//! refunds nothing.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

/// Units in one token: a rate per second and a rate per minute both refill
/// a whole number of units per millisecond.
pub const UNITS_PER_TOKEN: u64 = 60_000;

/// Shards, each behind its own lock.
const SHARDS: usize = 64;

/// Generations a shard keeps: a key is forgotten after two flips without use.
const GENERATIONS: usize = 2;

/// What a bucket belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum LimitKey {
    /// An IPv4 address.
    V4(u32),
    /// The top 64 bits of an IPv6 address: its /64.
    V6Net(u64),
    /// The first 16 bytes of a SHA-256 digest (see [`hashed_key`]).
    Hashed([u8; 16]),
    /// One budget shared by every caller.
    Global,
}

/// The key of a client address: IPv4 (including IPv4-mapped IPv6, as
/// dual-stack listeners report it) by address, IPv6 by its /64.
pub fn address_key(ip: IpAddr) -> LimitKey {
    match ip.to_canonical() {
        IpAddr::V4(a) => LimitKey::V4(u32::from(a)),
        IpAddr::V6(a) => LimitKey::V6Net(u64::try_from(u128::from(a) >> 64).unwrap_or(u64::MAX)),
    }
}

/// The key of a sequence of byte strings: SHA-256 over each part with its
/// length in front (so `["ab", "c"]` and `["a", "bc"]` differ), cut to 16
/// bytes.
pub fn hashed_key(parts: &[&[u8]]) -> LimitKey {
    let mut h = Sha256::new();
    for &p in parts {
        h.update(u64::try_from(p.len()).unwrap_or(u64::MAX).to_le_bytes());
        h.update(p);
    }
    let digest: [u8; 32] = h.finalize().into();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    LimitKey::Hashed(out)
}

/// A bucket: `units` left as of `at_ms`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    units: u64,
    at_ms: u64,
}

/// One shard's buckets in two generations: lookups try `young`, then
/// `old` (promoting what they find); inserts go to `young`.
#[derive(Debug, Default)]
struct Shard {
    young: HashMap<LimitKey, Bucket>,
    old: HashMap<LimitKey, Bucket>,
}

/// Token buckets by [`LimitKey`], at one rate, in bounded memory.
pub struct Limiter {
    /// Units refilled per millisecond (at least one); changed at runtime
    /// by [`set_rate`](Self::set_rate).
    refill_per_ms: AtomicU64,
    /// A full bucket, in units (at least one token).
    cap: AtomicU64,
    /// Keys a generation of one shard holds (at least one).
    per_gen: usize,
    seed: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("refill_per_ms", &self.refill_per_ms.load(Ordering::Relaxed))
            .field("cap", &self.cap.load(Ordering::Relaxed))
            .field("per_gen", &self.per_gen)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// `per_second` tokens a second on average (at least one), bursts of
    /// up to `burst` (at least one), remembering about `capacity` keys.
    pub fn new(per_second: u32, burst: u32, capacity: usize) -> Self {
        // One token a second is UNITS_PER_TOKEN / 1000 units a millisecond.
        let refill = u64::from(per_second.max(1)).saturating_mul(UNITS_PER_TOKEN / 1000);
        Self::with_refill(refill, burst, capacity)
    }

    /// `per_minute` tokens a minute on average (at least one), bursts of
    /// up to `burst` (at least one), remembering about `capacity` keys.
    pub fn per_minute(per_minute: u32, burst: u32, capacity: usize) -> Self {
        // One token a minute is UNITS_PER_TOKEN / 60 000 units a millisecond.
        let refill = u64::from(per_minute.max(1)).saturating_mul(UNITS_PER_TOKEN / 60_000);
        Self::with_refill(refill, burst, capacity)
    }

    fn with_refill(refill_per_ms: u64, burst: u32, capacity: usize) -> Self {
        Limiter {
            refill_per_ms: AtomicU64::new(refill_per_ms.max(1)),
            cap: AtomicU64::new(u64::from(burst.max(1)).saturating_mul(UNITS_PER_TOKEN)),
            per_gen: (capacity / GENERATIONS / SHARDS).max(1),
            seed: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// A new rate for every key: `per_second` tokens a second (at least
    /// one), bursts of `burst` (at least one). Buckets keep what they hold,
    /// cut to the new burst.
    pub fn set_rate(&self, per_second: u32, burst: u32) {
        let refill = u64::from(per_second.max(1)).saturating_mul(UNITS_PER_TOKEN / 1000);
        self.refill_per_ms.store(refill, Ordering::Relaxed);
        self.cap.store(
            u64::from(burst.max(1)).saturating_mul(UNITS_PER_TOKEN),
            Ordering::Relaxed,
        );
    }

    /// Takes one token for `key` at `now_ms`; on refusal, the whole seconds
    /// (at least one) until a token is due, for a `Retry-After` header.
    pub fn take(&self, key: LimitKey, now_ms: u64) -> Result<(), u64> {
        let mut guard = self
            .shard(&key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let s = &mut *guard;
        let (refill_per_ms, cap) = (
            self.refill_per_ms.load(Ordering::Relaxed),
            self.cap.load(Ordering::Relaxed),
        );
        let found = s.young.get(&key).copied();
        let in_young = found.is_some();
        let mut b = match found {
            Some(b) => b,
            None => s.old.remove(&key).unwrap_or(Bucket {
                units: cap,
                at_ms: now_ms,
            }),
        };
        // A clock that went backwards refills nothing and keeps the later time.
        let elapsed = now_ms.saturating_sub(b.at_ms);
        b.units = b
            .units
            .saturating_add(elapsed.saturating_mul(refill_per_ms))
            .min(cap);
        b.at_ms = b.at_ms.max(now_ms);
        let out = if b.units >= UNITS_PER_TOKEN {
            b.units -= UNITS_PER_TOKEN;
            Ok(())
        } else {
            let per_second = refill_per_ms.saturating_mul(1000);
            Err((UNITS_PER_TOKEN - b.units).div_ceil(per_second).max(1))
        };
        if !in_young && s.young.len() >= self.per_gen {
            // The young generation is full: it becomes the old one, and the
            // old one's allocation, emptied, the young one.
            let old = std::mem::take(&mut s.old);
            s.old = std::mem::replace(&mut s.young, old);
            s.young.clear();
        }
        s.young.insert(key, b);
        out
    }

    /// Keys remembered, over every shard.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|m| {
                let s = m.lock().unwrap_or_else(PoisonError::into_inner);
                s.young.len().saturating_add(s.old.len())
            })
            .fold(0, usize::saturating_add)
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this limiter remembers at once.
    pub fn bound(&self) -> usize {
        self.per_gen
            .saturating_mul(GENERATIONS)
            .saturating_mul(SHARDS)
    }

    fn shard_index(&self, key: &LimitKey) -> usize {
        let n = u64::try_from(self.shards.len()).unwrap_or(1).max(1);
        usize::try_from(self.seed.hash_one(key) % n).unwrap_or(0)
    }

    fn shard(&self, key: &LimitKey) -> &Mutex<Shard> {
        // `shard_index` is below the number of shards (never zero).
        &self.shards[self.shard_index(key)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn refuses_beyond_the_burst_with_a_retry_after() {
        let l = Limiter::new(1, 3, 1024);
        let k = LimitKey::V4(1);
        for _ in 0..3 {
            assert_eq!(l.take(k, 0), Ok(()));
        }
        assert_eq!(l.take(k, 0), Err(1));
        assert_eq!(l.take(LimitKey::V4(2), 0), Ok(()), "keys are separate");

        let slow = Limiter::per_minute(30, 1, 1024);
        assert_eq!(slow.take(k, 0), Ok(()));
        assert_eq!(slow.take(k, 0), Err(2), "one token every two seconds");
    }

    #[test]
    fn a_new_rate_applies_at_once_and_cuts_full_buckets() {
        let l = Limiter::new(1, 10, 1024);
        let k = LimitKey::V4(7);
        assert_eq!(l.take(k, 0), Ok(()));
        l.set_rate(1, 2);
        // Nine tokens were left: cut to the new burst of two.
        assert_eq!(l.take(k, 0), Ok(()));
        assert_eq!(l.take(k, 0), Ok(()));
        assert_eq!(l.take(k, 0), Err(1));
        l.set_rate(100, 100);
        assert_eq!(l.take(k, 10), Ok(()), "one token each 10 ms now");
        assert_eq!(l.take(LimitKey::V4(8), 0), Ok(()));
    }

    #[test]
    fn refills_as_time_passes() {
        let l = Limiter::new(2, 2, 1024);
        let k = LimitKey::Global;
        assert_eq!(l.take(k, 1_000), Ok(()));
        assert_eq!(l.take(k, 1_000), Ok(()));
        assert!(l.take(k, 1_000).is_err());
        assert!(l.take(k, 1_400).is_err(), "0.8 of a token by then");
        assert_eq!(l.take(k, 1_500), Ok(()));
        assert!(l.take(k, 1_500).is_err());
        // A long pause refills no more than the burst.
        assert_eq!(l.take(k, 1_000_000), Ok(()));
        assert_eq!(l.take(k, 1_000_000), Ok(()));
        assert!(l.take(k, 1_000_000).is_err());
    }

    #[test]
    fn memory_stays_bounded() {
        let l = Limiter::new(1, 1, 512);
        assert_eq!(l.per_gen, 4);
        assert!(l.is_empty());
        for i in 0..10_000u32 {
            assert_eq!(l.take(LimitKey::V4(i), 0), Ok(()));
        }
        assert!(l.len() <= 2 * l.per_gen * SHARDS, "{} keys", l.len());
        assert!(l.len() <= l.bound());
        assert!(!l.is_empty());
    }

    #[test]
    fn an_evicted_key_comes_back_full() {
        let l = Limiter::new(1, 3, 512);
        let target = LimitKey::V4(u32::MAX);
        for _ in 0..3 {
            assert_eq!(l.take(target, 0), Ok(()));
        }
        assert!(l.take(target, 0).is_err());
        // Two full generations of other keys in the target's shard.
        let own = l.shard_index(&target);
        let others: Vec<LimitKey> = (0..u32::MAX)
            .map(LimitKey::V4)
            .filter(|k| l.shard_index(k) == own)
            .take(2 * l.per_gen + 1)
            .collect();
        for k in others {
            assert_eq!(l.take(k, 0), Ok(()));
        }
        for _ in 0..3 {
            assert_eq!(l.take(target, 0), Ok(()), "forgotten, so full again");
        }
        assert!(l.take(target, 0).is_err());
    }

    #[test]
    fn a_key_in_the_old_generation_keeps_its_bucket() {
        let l = Limiter::new(1, 2, 512);
        let target = LimitKey::V4(7);
        assert_eq!(l.take(target, 0), Ok(()));
        assert_eq!(l.take(target, 0), Ok(()));
        // One generation of other keys: the target moves to the old one.
        let own = l.shard_index(&target);
        let others: Vec<LimitKey> = (0..u32::MAX)
            .map(LimitKey::V4)
            .filter(|k| *k != target && l.shard_index(k) == own)
            .take(l.per_gen)
            .collect();
        for k in others {
            assert_eq!(l.take(k, 0), Ok(()));
        }
        assert_eq!(l.take(target, 0), Err(1), "still empty");
    }

    #[test]
    fn time_going_backwards_refunds_nothing() {
        let l = Limiter::new(1, 1, 1024);
        let k = LimitKey::V4(9);
        assert_eq!(l.take(k, 10_000), Ok(()));
        assert_eq!(l.take(k, 0), Err(1));
        assert_eq!(l.take(k, 5_000), Err(1));
        assert_eq!(l.take(k, 10_000), Err(1), "the later time stands");
        assert_eq!(l.take(k, 11_000), Ok(()));
    }

    #[test]
    fn extreme_rates_do_not_overflow() {
        let l = Limiter::new(u32::MAX, u32::MAX, usize::MAX);
        assert_eq!(l.take(LimitKey::Global, 0), Ok(()));
        assert_eq!(l.take(LimitKey::Global, u64::MAX), Ok(()));
        let z = Limiter::new(0, 0, 0);
        assert_eq!(z.per_gen, 1);
        assert_eq!(z.take(LimitKey::Global, 0), Ok(()));
        assert_eq!(z.take(LimitKey::Global, 0), Err(1));
    }

    #[test]
    fn addresses_share_a_key_by_v4_address_or_v6_slash_64() {
        assert_eq!(
            address_key(ip("2001:db8::1")),
            address_key(ip("2001:db8::ffff"))
        );
        assert_ne!(
            address_key(ip("2001:db8::1")),
            address_key(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            address_key(ip("2001:db8::1")),
            LimitKey::V6Net(0x2001_0db8_0000_0000)
        );
        assert_eq!(
            address_key(ip("::ffff:10.0.0.1")),
            address_key(ip("10.0.0.1"))
        );
        assert_eq!(address_key(ip("10.0.0.1")), LimitKey::V4(0x0a00_0001));
        assert_ne!(address_key(ip("10.0.0.1")), address_key(ip("10.0.0.2")));
    }

    #[test]
    fn hashed_keys_separate_their_parts() {
        fn key(parts: &[&str]) -> LimitKey {
            let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
            hashed_key(&bytes)
        }
        assert_eq!(key(&["ab", "c"]), key(&["ab", "c"]));
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        assert_ne!(key(&["abc"]), key(&["ab", "c"]));
        assert_ne!(key(&["ab", "c"]), LimitKey::Global);
    }
}
