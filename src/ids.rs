//! Random identifiers: nonces, keys made on first start, replica names and manual incidents'
//! group keys. A leaf that every floor may use.

/// `bytes` random bytes from the operating system's generator, as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}
