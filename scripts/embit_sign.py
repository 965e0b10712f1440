#!/usr/bin/env python3
"""An independent BIP-174 signer for the tests: embit (PyPI), not
Strongroom's code, signs a PSBT with keys below a BIP-39 mnemonic, as a
cold signer or hardware wallet would: the keys the PSBT's derivations
(PSBT_IN_BIP32_DERIVATION) place under this seed's fingerprint, or, with
PATH, the key at that path. Refuses to write a PSBT it added no signature
to.

Usage: embit_sign.py IN.psbt MNEMONIC_FILE OUT.psbt [PATH]
"""
import sys

from embit import bip32, bip39
from embit.psbt import PSBT


def main() -> int:
    src, words_file, out = sys.argv[1:4]
    path = sys.argv[4] if len(sys.argv) > 4 else None
    with open(words_file, encoding="utf-8") as f:
        words = f.read().strip()
    with open(src, encoding="utf-8") as f:
        psbt = PSBT.from_string(f.read().strip())
    root = bip32.HDKey.from_seed(bip39.mnemonic_to_seed(words))
    signed = psbt.sign_with(root.derive(path).key if path else root)
    if signed == 0:
        print("embit: no input of this PSBT is this key's to sign", file=sys.stderr)
        return 1
    with open(out, "w", encoding="utf-8") as f:
        f.write(psbt.to_string() + "\n")
    print(f"embit: {signed} signature(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
