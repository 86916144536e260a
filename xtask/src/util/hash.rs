//! SHA-256, the one hash the xtask stores: build fingerprints in image labels, the name of its
//! containers.conf, the stamps of host-fetched dependencies. Stable across Rust releases, unlike
//! `std`'s `DefaultHasher`, whose output may change with the toolchain. hmac-sha256 is a
//! dependency-free implementation (docs/xtask.md); bundles of hundreds of MB are checksummed by
//! coreutils' `sha256sum` instead, which is faster than any debug build.

/// A running SHA-256.
#[derive(Default)]
pub struct Sha256(hmac_sha256::Hash);

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256(hmac_sha256::Hash::new())
    }

    pub fn update(&mut self, bytes: impl AsRef<[u8]>) -> &mut Sha256 {
        self.0.update(bytes);
        self
    }

    /// A field whose end is unambiguous: its length, then its bytes.
    pub fn field(&mut self, bytes: impl AsRef<[u8]>) -> &mut Sha256 {
        let bytes = bytes.as_ref();
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Lower-case hex of the digest.
    pub fn hex(self) -> String {
        hex(&self.0.finalize())
    }
}

/// `sha256(bytes)` in lower-case hex.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.hex()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        // FIPS 180-2 test vectors.
        assert_eq!(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let mut h = Sha256::new();
        h.update("ab").update("c");
        assert_eq!(h.hex(), sha256_hex("abc"), "updates concatenate");
    }

    #[test]
    fn fields_do_not_run_into_each_other() {
        let (mut a, mut b) = (Sha256::new(), Sha256::new());
        a.field("ab").field("c");
        b.field("a").field("bc");
        assert_ne!(a.hex(), b.hex());
    }
}
