//! Signing keys in BIND's key-file format: a `.private` file (`Private-key-format:
//! v1.3`) and the `.key` file beside it, whose DNSKEY (flags included) is the one
//! published, so the DS that `dnssec-dsfromkey` prints for it matches.

use data_encoding::{BASE64, HEXUPPER};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::BinEncodable;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use std::path::{Path, PathBuf};

/// ECDSAP256SHA256 (RFC 6605).
pub const ECDSAP256: u8 = 13;
/// ED25519 (RFC 8080).
pub const ED25519: u8 = 15;

/// A zone's signing key.
pub struct Key {
    /// The `.private` file it was read from.
    pub file: PathBuf,
    pub algorithm: u8,
    pub tag: u16,
    /// The DNSKEY RDATA: flags, protocol 3, algorithm, public key.
    pub dnskey: Box<[u8]>,
    pair: Pair,
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key {{ file: {}, algorithm: {}, tag: {} }}", self.file.display(), self.algorithm, self.tag)
    }
}

impl Key {
    /// The signature of `data`: r‖s for ECDSA (RFC 6605 §4), 64 bytes for Ed25519.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        match &self.pair {
            Pair::Ecdsa(pair) => {
                // ring fails only when the system's randomness does
                pair.sign(&SystemRandom::new(), data).map(|s| s.as_ref().to_vec()).unwrap_or_default()
            }
            Pair::Ed25519(pair) => pair.sign(data).as_ref().to_vec(),
        }
    }

    /// The length of a signature.
    pub fn signature_len(&self) -> usize {
        64
    }

    /// The DS RDATA for this key at `owner`, digest type 2 (SHA-256).
    pub fn ds(&self, owner: &Name) -> Vec<u8> {
        let mut input = owner.to_lowercase().to_bytes().unwrap_or_default();
        input.extend_from_slice(&self.dnskey);
        let digest = ring::digest::digest(&ring::digest::SHA256, &input);
        let mut ds = Vec::with_capacity(36);
        ds.extend_from_slice(&self.tag.to_be_bytes());
        ds.extend_from_slice(&[self.algorithm, 2]);
        ds.extend_from_slice(digest.as_ref());
        ds
    }

    /// The DS record in presentation form, as `dnssec-dsfromkey -2` prints it.
    pub fn ds_text(&self, owner: &Name) -> String {
        let ds = self.ds(owner);
        format!("{owner} IN DS {} {} 2 {}", self.tag, self.algorithm, HEXUPPER.encode(&ds[4..]))
    }
}

/// The key tag of a DNSKEY RDATA (RFC 4034 appendix B).
pub fn key_tag(dnskey: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in dnskey.iter().enumerate() {
        ac += u32::from(*b) << if i & 1 == 1 { 0 } else { 8 };
    }
    ac += ac >> 16;
    (ac & 0xFFFF) as u16
}

/// The `.private` and `.key` files of `file`, which may name either or their common
/// stem (`Klb.example.+013+12345`).
fn paths(file: &Path) -> (PathBuf, PathBuf) {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".private").or_else(|| name.strip_suffix(".key")).unwrap_or(&name);
    (file.with_file_name(format!("{stem}.private")), file.with_file_name(format!("{stem}.key")))
}

/// Reads the key at `file` for the zone `origin`; an error says what is wrong, in words
/// that follow the file's name.
pub fn read(file: &Path, origin: &Name) -> Result<Key, String> {
    let (private, public) = paths(file);
    let text = std::fs::read_to_string(&private).map_err(|e| format!("cannot read {}: {e}", private.display()))?;
    // what is wrong with the .private file first
    private_part(&text, &private)?;
    let key_text = std::fs::read_to_string(&public).map_err(|e| format!("cannot read {}: {e}", public.display()))?;
    parse(&text, &private, &key_text, &public, origin)
}

/// A key from the text of its `.private` file and of its `.key` file (named `private`
/// and `public` in errors).
pub fn parse(text: &str, private: &Path, key_text: &str, public: &Path, origin: &Name) -> Result<Key, String> {
    let (algorithm, secret) = private_part(text, private)?;
    let dnskey = parse_dnskey(key_text, public, origin)?;
    if dnskey[3] != algorithm {
        return Err(format!(
            "{}: its DNSKEY is of algorithm {}, its private key of algorithm {algorithm}",
            public.display(),
            dnskey[3]
        ));
    }
    let pair = pair(algorithm, &secret, &dnskey[4..]).ok_or_else(|| {
        format!("{}: the private key does not match the public key in {}", private.display(), public.display())
    })?;
    Ok(Key { file: private.to_path_buf(), algorithm, tag: key_tag(&dnskey), dnskey: dnskey.into(), pair })
}

/// The algorithm and private part of a `.private` file's `text`.
fn private_part(text: &str, private: &Path) -> Result<(u8, Vec<u8>), String> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    let in_private = |what: String| format!("{}: {what}", private.display());
    match field("Private-key-format") {
        Some(v) if v.starts_with("v1.") => {}
        Some(v) => return Err(in_private(format!("Private-key-format {v} is not supported (v1.2 or v1.3)"))),
        None => return Err(in_private("is not a BIND private key file (no Private-key-format line)".into())),
    }
    let algorithm = field("Algorithm")
        .and_then(|v| v.split_whitespace().next()?.parse::<u8>().ok())
        .ok_or_else(|| in_private("has no Algorithm line".into()))?;
    if algorithm != ECDSAP256 && algorithm != ED25519 {
        return Err(in_private(format!("algorithm {algorithm} is not supported (13 ECDSAP256SHA256 or 15 ED25519)")));
    }
    let secret = field("PrivateKey")
        .and_then(|v| BASE64.decode(v.as_bytes()).ok())
        .ok_or_else(|| in_private("has no PrivateKey line in base64".into()))?;
    Ok((algorithm, secret))
}

/// The key pair of `algorithm` from its private part and DNSKEY public key; None when
/// they do not belong together.
fn pair(algorithm: u8, secret: &[u8], public: &[u8]) -> Option<Pair> {
    match algorithm {
        ECDSAP256 => {
            // DNSSEC's public key is x‖y; ring wants the uncompressed point 04‖x‖y
            let point = [&[4u8][..], public].concat();
            let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            EcdsaKeyPair::from_private_key_and_public_key(alg, secret, &point, &SystemRandom::new())
                .ok()
                .map(Pair::Ecdsa)
        }
        ED25519 => Ed25519KeyPair::from_seed_and_public_key(secret, public).ok().map(Pair::Ed25519),
        _ => None,
    }
}

/// The DNSKEY RDATA of a `.key` file's `text` (one record on one line, as BIND
/// writes it: owner, optional TTL and class, DNSKEY, flags, protocol, algorithm and
/// the public key in base64), whose owner must be `origin`; `path` names it in errors.
fn parse_dnskey(text: &str, path: &Path, origin: &Name) -> Result<Vec<u8>, String> {
    let at = |line: usize, what: String| format!("{}:{line}: {what}", path.display());
    let mut records = text.lines().enumerate().filter_map(|(i, l)| {
        let l = l.split(';').next().unwrap_or_default().trim();
        (!l.is_empty()).then(|| (i + 1, l.split_whitespace().collect::<Vec<_>>()))
    });
    let Some((line, words)) = records.next() else { return Err(format!("{}: holds no DNSKEY record", path.display())) };
    if let Some((extra, _)) = records.next() {
        return Err(at(extra, "a key file holds one DNSKEY record".into()));
    }
    let Some(kind) = words.iter().position(|w| w.eq_ignore_ascii_case("DNSKEY")) else {
        return Err(at(line, "is not a DNSKEY record".into()));
    };
    let owner = Name::from_ascii(words[0]).map_err(|e| at(line, format!("bad owner name {}: {e}", words[0])))?;
    if owner.to_lowercase() != *origin {
        return Err(at(line, format!("the key belongs to {owner}, not to the zone {origin}")));
    }
    let number = |i: usize| words.get(kind + i).and_then(|w| w.parse::<u16>().ok());
    let (Some(flags), Some(3), Some(algorithm)) = (number(1), number(2), number(3)) else {
        return Err(at(line, "expected DNSKEY <flags> 3 <algorithm> <public key>".into()));
    };
    let public = BASE64
        .decode(words.get(kind + 4..).unwrap_or_default().concat().as_bytes())
        .map_err(|e| at(line, format!("the public key is not base64: {e}")))?;
    if flags & 0x0100 == 0 {
        return Err(at(line, "the DNSKEY's flags lack the zone key bit (256)".into()));
    }
    let mut rdata = flags.to_be_bytes().to_vec();
    rdata.extend_from_slice(&[3, algorithm as u8]);
    rdata.extend_from_slice(&public);
    Ok(rdata)
}

/// Makes a key for `origin` (flags 257: it signs every RRset, keys included) and writes
/// its `.key` and `.private` files into `dir` as BIND names them; returns the key.
pub fn generate(origin: &Name, algorithm: u8, dir: &Path) -> Result<Key, String> {
    let rng = SystemRandom::new();
    let failed = |e: ring::error::Unspecified| format!("cannot make a key: {e}");
    // ring hands out PKCS#8 only; the raw private part sits at a fixed place in the
    // documents it writes, and `pair` below checks it against the public key
    let (secret, public) = match algorithm {
        ECDSAP256 => {
            let doc =
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(failed)?;
            let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng)
                .map_err(|e| format!("cannot read the key made: {e}"))?;
            (doc.as_ref()[36..68].to_vec(), pair.public_key().as_ref()[1..].to_vec())
        }
        ED25519 => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(failed)?;
            let pair =
                Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|e| format!("cannot read the key made: {e}"))?;
            (doc.as_ref()[16..48].to_vec(), pair.public_key().as_ref().to_vec())
        }
        other => return Err(format!("algorithm {other} is not supported")),
    };
    let pair = pair(algorithm, &secret, &public).ok_or("the key made does not check out")?;
    let mut dnskey = vec![1, 1, 3, algorithm];
    dnskey.extend_from_slice(&public);
    let tag = key_tag(&dnskey);
    let stem = format!("K{origin}+{algorithm:03}+{tag:05}");
    let (name, mnemonic) = if algorithm == ECDSAP256 { ("ECDSAP256SHA256", "13") } else { ("ED25519", "15") };
    let now = time_stamp();
    let key_text = format!(
        "; This is a key-signing key, keyid {tag}, for {origin}\n; Created: {now}\n{origin} IN DNSKEY 257 3 {algorithm} {}\n",
        BASE64.encode(&public)
    );
    let private_text = format!(
        "Private-key-format: v1.3\nAlgorithm: {mnemonic} ({name})\nPrivateKey: {}\nCreated: {now}\nPublish: {now}\nActivate: {now}\n",
        BASE64.encode(&secret)
    );
    let private = dir.join(format!("{stem}.private"));
    write_new(&dir.join(format!("{stem}.key")), key_text.as_bytes(), 0o644)?;
    write_new(&private, private_text.as_bytes(), 0o600)?;
    Ok(Key { file: private, algorithm, tag, dnskey: dnskey.into(), pair })
}

/// Creates `path` with `mode`; an existing file is an error, never overwritten.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Now as BIND writes it in key files: YYYYMMDDHHMMSS, UTC.
fn time_stamp() -> String {
    let rfc3339 = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    rfc3339.chars().filter(char::is_ascii_digit).collect()
}
