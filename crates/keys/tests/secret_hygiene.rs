//! Secret types cannot leak through the traits that print, copy or
//! serialise: these assertions fail to compile if anyone adds one.

use keys::hd::{Mnemonic, Seed};
use keys::shamir::UnsealShare;
use keys::{Secret32, SoftwareSigner};
use static_assertions::assert_not_impl_any;

assert_not_impl_any!(Secret32: Clone, Copy, std::fmt::Display, serde::Serialize);
assert_not_impl_any!(UnsealShare: Clone, Copy, std::fmt::Display, serde::Serialize);
assert_not_impl_any!(Mnemonic: Clone, Copy, std::fmt::Display, serde::Serialize);
assert_not_impl_any!(Seed: Clone, Copy, std::fmt::Display, serde::Serialize);
assert_not_impl_any!(SoftwareSigner: Clone, std::fmt::Display, serde::Serialize);
assert_not_impl_any!(audit::AuditSigningKey: Clone, Copy, std::fmt::Display, serde::Serialize);

#[test]
fn debug_output_is_redacted() {
    let s = Secret32::from_bytes(&mut [0xab; 32]);
    let share = UnsealShare::from_text("srshare1-abababab");
    let m = Mnemonic::generate().unwrap_or_else(|e| panic!("{e}"));
    let seed = m.to_seed("");
    let printed = format!("{s:?} {share:?} {m:?} {seed:?}");
    assert!(!printed.contains("ab"), "{printed}");
    let tokens: Vec<&str> = printed
        .split(|c: char| !c.is_ascii_alphanumeric())
        .collect();
    for word in m.phrase().split(' ') {
        assert!(!tokens.contains(&word), "{printed}");
    }
    assert_eq!(printed.matches("<redacted>").count(), 4);
}
