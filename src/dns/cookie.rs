//! DNS cookies (RFC 7873) with server cookies made as RFC 9018 says (version 1, a
//! timestamp and SipHash-2-4 of the client cookie, the timestamp and the client's
//! address), so that a client that returns its server cookie proves it receives our
//! replies at its address: RRL does not limit it (SPEC §7). Every reply to a query
//! with a cookie carries a fresh server cookie. The secret is chosen at start.

use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::LazyLock;

/// A server cookie is accepted for an hour after it was made, and five minutes
/// ahead (clock skew between the nodes that share a secret), as RFC 9018 §4.3 says.
const LIFETIME: u32 = 3600;
const SKEW: u32 = 300;

/// This process's secret, chosen at start.
static SECRET: LazyLock<[u8; 16]> = LazyLock::new(|| {
    let mut secret = [0u8; 16];
    // without the OS's randomness, cookies still work; they are only guessable
    let _ = getrandom::fill(&mut secret);
    secret
});

/// A query's COOKIE option, judged, with the server cookie to send back.
#[derive(Debug, Clone, Copy)]
pub struct Cookie {
    pub client: [u8; 8],
    server: [u8; 32],
    server_len: u8,
    /// Whether the query's server cookie is one we made for this client, recently.
    pub valid: bool,
    /// The server cookie for the reply.
    pub reply: [u8; 16],
}

impl Cookie {
    /// The option's data: a client cookie alone (8 bytes) or with a server cookie
    /// (8 to 32 bytes); any other length is malformed (FORMERR, RFC 7873 §5.2.2).
    pub fn parse(data: &[u8]) -> Option<Cookie> {
        if !(data.len() == 8 || (16..=40).contains(&data.len())) {
            return None;
        }
        let mut cookie = Cookie {
            client: [0; 8],
            server: [0; 32],
            server_len: (data.len() - 8) as u8,
            valid: false,
            reply: [0; 16],
        };
        cookie.client.copy_from_slice(&data[..8]);
        cookie.server[..data.len() - 8].copy_from_slice(&data[8..]);
        Some(cookie)
    }

    /// Judges the server cookie and makes the reply's, for `client` at the current time.
    pub fn judge(&mut self, client: IpAddr) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
        self.judge_at(&SECRET, client, now);
    }

    fn judge_at(&mut self, secret: &[u8; 16], client: IpAddr, now: u32) {
        let server = &self.server[..usize::from(self.server_len)];
        self.valid = server.len() == 16 && server[..4] == [1, 0, 0, 0] && {
            let made = u32::from_be_bytes(server[4..8].try_into().expect("4 bytes"));
            // serial-number arithmetic: the clock may wrap
            let age = now.wrapping_sub(made);
            (age <= LIFETIME || made.wrapping_sub(now) <= SKEW)
                && server[8..] == hash(secret, &self.client, &server[..8], client)
        };
        self.reply = make(secret, &self.client, client, now);
    }
}

/// A server cookie: version 1, three reserved bytes, the timestamp, the hash.
fn make(secret: &[u8; 16], client_cookie: &[u8; 8], client: IpAddr, now: u32) -> [u8; 16] {
    let mut cookie = [0u8; 16];
    cookie[0] = 1;
    cookie[4..8].copy_from_slice(&now.to_be_bytes());
    let hash = hash(secret, client_cookie, &cookie[..8], client);
    cookie[8..].copy_from_slice(&hash);
    cookie
}

fn hash(secret: &[u8; 16], client_cookie: &[u8; 8], head: &[u8], client: IpAddr) -> [u8; 8] {
    let mut hasher = SipHasher24::new_with_key(secret);
    hasher.write(client_cookie);
    hasher.write(head);
    match client {
        IpAddr::V4(a) => hasher.write(&a.octets()),
        IpAddr::V6(a) => hasher.write(&a.octets()),
    }
    hasher.finish().to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    fn secret() -> [u8; 16] {
        hex("e5e973e5a6b2a43f48e7dc849e37bfcf").try_into().unwrap()
    }

    /// RFC 9018 Appendix A.1 and A.2: the server cookies its examples make.
    #[test]
    fn server_cookies_are_rfc_9018s() {
        let mut learning = Cookie::parse(&hex("2464c4abcf10c957")).unwrap();
        learning.judge_at(&secret(), "198.51.100.100".parse().unwrap(), 1559731985);
        assert!(!learning.valid, "no server cookie yet");
        assert_eq!(learning.reply.to_vec(), hex("010000005cf79f111f8130c3eee29480"));

        let mut renewing = Cookie::parse(&hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480")).unwrap();
        renewing.judge_at(&secret(), "198.51.100.100".parse().unwrap(), 1559734385);
        assert!(renewing.valid, "40 minutes old");
        assert_eq!(renewing.reply.to_vec(), hex("010000005cf7a871d4a564a1442aca77"));
    }

    #[test]
    fn a_server_cookie_is_valid_for_its_client_within_its_lifetime() {
        let client: IpAddr = "198.51.100.100".parse().unwrap();
        let made = 1559731985;
        let returned = hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480");
        let judged = |client: IpAddr, now: u32, bytes: &[u8]| {
            let mut cookie = Cookie::parse(bytes).unwrap();
            cookie.judge_at(&secret(), client, now);
            cookie.valid
        };
        assert!(judged(client, made, &returned));
        assert!(judged(client, made + 3600, &returned));
        assert!(!judged(client, made + 3601, &returned), "expired");
        assert!(judged(client, made - 300, &returned), "within the skew");
        assert!(!judged(client, made - 301, &returned), "from too far ahead");
        assert!(!judged("198.51.100.101".parse().unwrap(), made, &returned), "another client");
        let mut forged = returned.clone();
        forged[23] ^= 1;
        assert!(!judged(client, made, &forged), "a wrong hash");
        assert!(!judged(client, made, &returned[..20]), "a server cookie of another length");
    }

    #[test]
    fn option_lengths() {
        for len in [0, 7, 9, 15, 41] {
            assert!(Cookie::parse(&vec![0; len]).is_none(), "{len} bytes");
        }
        for len in [8, 16, 40] {
            assert!(Cookie::parse(&vec![0; len]).is_some(), "{len} bytes");
        }
    }
}
