//! The few shapes of external term format the conversion builds or reads by hand: integers too
//! big for 64 bits, and atoms outside Latin-1 (the NIF API of OTP 25 handles neither).

const VERSION: u8 = 131;
const SMALL_BIG_EXT: u8 = 110;
const LARGE_BIG_EXT: u8 = 111;
const ATOM_UTF8_EXT: u8 = 118;
const SMALL_ATOM_UTF8_EXT: u8 = 119;

/// A bignum: sign and magnitude as little-endian bytes.
pub fn encode_big(negative: bool, magnitude_le: &[u8]) -> Vec<u8> {
    let mut etf = Vec::with_capacity(magnitude_le.len() + 7);
    etf.push(VERSION);
    if magnitude_le.len() < 256 {
        etf.push(SMALL_BIG_EXT);
        etf.push(magnitude_le.len() as u8);
    } else {
        etf.push(LARGE_BIG_EXT);
        etf.extend_from_slice(&(magnitude_le.len() as u32).to_be_bytes());
    }
    etf.push(negative as u8);
    etf.extend_from_slice(magnitude_le);
    etf
}

/// The sign and little-endian magnitude of an encoded bignum.
pub fn decode_big(etf: &[u8]) -> Option<(bool, &[u8])> {
    match etf {
        [VERSION, SMALL_BIG_EXT, len, sign, digits @ ..] if digits.len() == *len as usize => {
            Some((*sign != 0, digits))
        }
        [VERSION, LARGE_BIG_EXT, a, b, c, d, sign, digits @ ..]
            if digits.len() == u32::from_be_bytes([*a, *b, *c, *d]) as usize =>
        {
            Some((*sign != 0, digits))
        }
        _ => None,
    }
}

pub fn encode_atom(name: &str) -> Vec<u8> {
    let mut etf = Vec::with_capacity(name.len() + 4);
    etf.push(VERSION);
    if name.len() < 256 {
        etf.push(SMALL_ATOM_UTF8_EXT);
        etf.push(name.len() as u8);
    } else {
        etf.push(ATOM_UTF8_EXT);
        etf.extend_from_slice(&(name.len() as u16).to_be_bytes());
    }
    etf.extend_from_slice(name.as_bytes());
    etf
}

pub fn decode_atom(etf: &[u8]) -> Option<&str> {
    let text = match etf {
        [VERSION, SMALL_ATOM_UTF8_EXT, len, text @ ..] if text.len() == *len as usize => text,
        [VERSION, ATOM_UTF8_EXT, a, b, text @ ..]
            if text.len() == u16::from_be_bytes([*a, *b]) as usize =>
        {
            text
        }
        _ => return None,
    };
    std::str::from_utf8(text).ok()
}
