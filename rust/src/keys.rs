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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_wire_format() {
        assert_eq!(session_key("dcesid", "AB12"), "dcesid:AB12");
        assert_eq!(user_key("dceusmap", 42), "dceusmap:42");
        assert_eq!(user_key("u", u64::MAX), "u:18446744073709551615");
    }
}
