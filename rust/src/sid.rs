//! Session ids in the dce wire format.
//!
//! `<64 hex random><4 hex ttl minutes><8..16 hex unix second of creation>`,
//! written upper case (as the Rust dce crate does), read in either case.
//! The 64-hex part is 256 bits straight from the OS CSPRNG.

use crate::{random, Error};

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
