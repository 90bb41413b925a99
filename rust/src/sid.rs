//! Session ids in the dce wire format.
//!
//! `<64 hex random><4 hex ttl minutes><8..16 hex unix second of creation>`,
//! written upper case (as the Rust dce crate does), read in either case.
//! The 64-hex part is 256 bits straight from the OS CSPRNG.

use crate::{keys, random, Error};

/// Length of the random part.
pub const RANDOM_HEX: usize = 64;
/// Length of the ttl part.
pub const TTL_HEX: usize = 4;
/// Shortest and longest valid sid.
pub const MIN_LEN: usize = RANDOM_HEX + TTL_HEX + 8;
pub const MAX_LEN: usize = RANDOM_HEX + TTL_HEX + 16;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Check a ttl in minutes: 1..=65535 (the 4-hex field; 0 would never live).
pub fn check_ttl(ttl_minutes: i64) -> Result<u16, Error> {
    match u16::try_from(ttl_minutes) {
        Ok(ttl) if ttl > 0 => Ok(ttl),
        _ => Err(Error::Config(format!(
            "ttl_minutes must be an integer in 1..65535, got {ttl_minutes}"
        ))),
    }
}

/// A fresh sid for a session of `ttl_minutes` created at unix second
/// `created_at`.
pub fn generate(ttl_minutes: u16, created_at: u64) -> String {
    let mut random = [0u8; RANDOM_HEX / 2];
    random::fill(&mut random);
    let mut sid = String::with_capacity(MAX_LEN);
    for byte in random {
        sid.push(HEX[usize::from(byte >> 4)] as char);
        sid.push(HEX[usize::from(byte & 0xF)] as char);
    }
    sid.push_str(&format!("{ttl_minutes:04X}{created_at:08X}"));
    sid
}

/// Positions (in the random part) of the 4 hex digits chosen to reach a slot.
const STEER_AT: usize = RANDOM_HEX - 4;

/// A fresh sid whose key `<prefix>:<sid>` lies in hash slot `slot` (Redis
/// Cluster): 60 hex digits from the OS CSPRNG (240 bits), then 4 hex digits
/// chosen so that the key hashes to `slot`. CRC16 is linear over GF(2), so
/// the checksum is that of the key with `0` digits XOR one precomputed term
/// per chosen digit. When the prefix holds a hash tag the sid does not move
/// the key, and the plain sid is returned.
pub fn generate_in_slot(ttl_minutes: u16, created_at: u64, prefix: &str, slot: u16) -> String {
    let slot = slot % keys::SLOTS;
    let probe = keys::session_key(prefix, "");
    // A sid holds no braces, so a key's hash tag, if any, lies in the prefix.
    if keys::hashed_part(probe.as_bytes()).len() != probe.len() {
        return generate(ttl_minutes, created_at);
    }
    loop {
        let mut sid = generate(ttl_minutes, created_at).into_bytes();
        sid[STEER_AT..RANDOM_HEX].copy_from_slice(b"0000");
        let mut key = probe.clone().into_bytes();
        let start = key.len();
        key.extend_from_slice(&sid);
        let base = keys::crc16(&key);
        // terms[p][v]: CRC of a same-length message that is zero except
        // at the p-th steering digit, which holds HEX[v] ^ b'0'.
        let mut terms = [[0u16; 16]; 4];
        let mut zero = vec![0u8; key.len()];
        for (p, row) in terms.iter_mut().enumerate() {
            let at = start + STEER_AT + p;
            for (v, term) in row.iter_mut().enumerate() {
                zero[at] = HEX[v] ^ b'0';
                *term = keys::crc16(&zero);
            }
            zero[at] = 0;
        }
        for (a, ta) in terms[0].iter().enumerate() {
            for (b, tb) in terms[1].iter().enumerate() {
                let ab = base ^ ta ^ tb;
                for (c, tc) in terms[2].iter().enumerate() {
                    let abc = ab ^ tc;
                    for (d, td) in terms[3].iter().enumerate() {
                        if (abc ^ td) % keys::SLOTS == slot {
                            for (p, v) in [a, b, c, d].into_iter().enumerate() {
                                sid[STEER_AT + p] = HEX[v];
                            }
                            return String::from_utf8(sid).expect("hex is ASCII");
                        }
                    }
                }
            }
        }
        // No combination reaches the slot with these random digits: draw again.
    }
}

/// True when `sid` is exactly 64 + 4 + 8..16 ASCII hex digits.
pub fn is_valid(sid: &str) -> bool {
    (MIN_LEN..=MAX_LEN).contains(&sid.len()) && sid.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The ttl (minutes) and creation second a sid carries.
pub fn parse(sid: &str) -> Result<(u16, u64), Error> {
    if !is_valid(sid) {
        return Err(Error::InvalidSid(format!(
            "not a session id: {}",
            redact(sid)
        )));
    }
    let ttl = u16::from_str_radix(&sid[RANDOM_HEX..RANDOM_HEX + TTL_HEX], 16);
    let created = u64::from_str_radix(&sid[RANDOM_HEX + TTL_HEX..], 16);
    match (ttl, created) {
        (Ok(ttl), Ok(created)) => Ok((ttl, created)),
        _ => unreachable!("validated hex of bounded length always parses"),
    }
}

/// A form of `sid` safe to show in messages and logs: its first 6 chars.
pub fn redact(sid: &str) -> String {
    let head: String = sid.chars().take(6).collect();
    format!("{head}… ({} chars)", sid.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_in_slot_hit_the_slot() {
        let mut seen = std::collections::HashSet::new();
        for round in 0..2000u32 {
            let slot = ((round * 7919) % 16384) as u16;
            let sid = generate_in_slot(60, 0x6560_0000, "dcesid", slot);
            assert!(is_valid(&sid));
            assert_eq!(parse(&sid).unwrap(), (60, 0x6560_0000));
            let key = keys::session_key("dcesid", &sid);
            assert_eq!(keys::key_slot(key.as_bytes()), slot, "{key}");
            assert!(
                seen.insert(sid[..STEER_AT].to_string()),
                "random part repeated"
            );
        }
        // A tag in the prefix decides the slot: any sid will do.
        let sid = generate_in_slot(60, 1, "{app}s", 3);
        assert!(is_valid(&sid));
        // An empty tag does not count.
        let sid = generate_in_slot(60, 1, "a{}b", 77);
        assert_eq!(
            keys::key_slot(keys::session_key("a{}b", &sid).as_bytes()),
            77
        );
    }

    #[test]
    fn generated_sids_have_the_wire_format() {
        let sid = generate(60, 0x6560_0000);
        assert_eq!(sid.len(), 76);
        assert!(is_valid(&sid));
        assert_eq!(&sid[64..], "003C65600000");
        assert!(sid[..64]
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        assert_eq!(parse(&sid), Ok((60, 0x6560_0000)));
    }

    #[test]
    fn creation_seconds_past_32_bits_grow_the_sid() {
        let sid = generate(65535, u64::MAX);
        assert_eq!(sid.len(), MAX_LEN);
        assert_eq!(parse(&sid), Ok((65535, u64::MAX)));
    }

    #[test]
    fn lower_case_parses() {
        let sid = format!("{}{}", "ab".repeat(32), "000a00000010");
        assert_eq!(parse(&sid), Ok((10, 16)));
    }

    #[test]
    fn sids_do_not_repeat() {
        let a = generate(1, 1);
        let b = generate(1, 1);
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_sids_are_refused() {
        let good = generate(60, 1_700_000_000);
        let too_long = "A".repeat(MAX_LEN + 1);
        let huge = "F".repeat(4 << 20);
        let non_ascii = format!("{}é", &good[..good.len() - 2]);
        let cases = [
            "",
            "abc",
            &good[..75],
            &too_long,
            &huge,
            &non_ascii,
            " 0000000000000000000000000000000000000000000000000000000000000000003C65600000",
            "+000000000000000000000000000000000000000000000000000000000000000003C65600000",
            "G000000000000000000000000000000000000000000000000000000000000000003C65600000",
        ];
        for case in cases {
            assert!(!is_valid(case), "{case:?} passed");
            assert!(matches!(parse(case), Err(Error::InvalidSid(_))));
        }
    }

    #[test]
    fn messages_never_show_a_whole_sid() {
        let sid = "Z".repeat(80);
        let Err(err) = parse(&sid) else { panic!() };
        assert!(!err.to_string().contains(&sid[..20]));
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(check_ttl(1), Ok(1));
        assert_eq!(check_ttl(65535), Ok(65535));
        for bad in [0, -1, 65536, i64::MAX] {
            assert!(matches!(check_ttl(bad), Err(Error::Config(_))));
        }
    }
}
