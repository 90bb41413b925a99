//! Redis key names, exactly as the dce family spells them.

/// `<prefix>:<sid>`: the hash holding one session. The sid is used as
/// presented (no case folding), so a key is found whatever case wrote it.
pub fn session_key(prefix: &str, sid: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + 1 + sid.len());
    key.push_str(prefix);
    key.push(':');
    key.push_str(sid);
    key
}

/// `<prefix>:<uid>`: the set of one user's sids; the uid in decimal.
pub fn user_key(prefix: &str, uid: u64) -> String {
    format!("{prefix}:{uid}")
}

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16-XMODEM (poly 0x1021, init 0, no reflection), as Redis Cluster uses.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of `key` Redis Cluster hashes: the content of the first `{...}`
/// when it is non-empty, else the whole key.
pub fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The Redis Cluster hash slot of `key` (what `CLUSTER KEYSLOT` answers).
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on redis-server 7.0.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b""), 0);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"{"), crc16(b"{") % SLOTS);
    }

    #[test]
    fn keys_follow_the_wire_format() {
        assert_eq!(session_key("dcesid", "AB12"), "dcesid:AB12");
        assert_eq!(user_key("dceusmap", 42), "dceusmap:42");
        assert_eq!(user_key("u", u64::MAX), "u:18446744073709551615");
    }
}
