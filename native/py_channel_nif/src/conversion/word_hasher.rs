//! A hasher for keys that are already one machine word with well-spread bits: an atom's
//! term, an object's address. SipHash (the standard map's default, made to resist chosen
//! keys) costs more than the lookup itself here, and these keys are not chosen by anyone.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default)]
pub struct WordHasher(u64);

/// For `HashMap<K, V, WordHashing>`.
pub type WordHashing = BuildHasherDefault<WordHasher>;

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_usize(&mut self, value: usize) {
        // Fibonacci hashing: spreads the low bits, which alignment leaves zero, over all.
        self.0 = (value as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
