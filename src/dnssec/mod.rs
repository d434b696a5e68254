//! DNSSEC online signing (SPEC §8): a zone's keys, and the signatures of the RRsets
//! that answers carry, made on first use and cached.
//!
//! A signature is a pure function of the key, the RRset (owner, type, class, TTL and
//! its records in canonical order) and the validity window, so the cache is keyed by a
//! 128-bit hash of the first two, whatever order the records were written in: a
//! rotation of a service's answer reuses one signature, and every region's answer
//! gets its own. The RRSIG's fields are hickory's (`SigInput`), the to-be-signed
//! data ours (checked against hickory's `TBS` in the tests), the signature ring's. A budget bounds how many are made per second, so that a flood
//! of distinct RRsets costs SERVFAILs, not the CPU.

mod keys;

pub use keys::{ECDSAP256, ED25519, Key, generate, key_tag, parse as parse_key, read as read_key};

use hickory_proto::dnssec::Algorithm;
use hickory_proto::dnssec::rdata::SigInput;
use hickory_proto::rr::{Name, RecordType, SerialNumber};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// A signature's inception lies this far back (clocks of validators run behind)…
const INCEPTION_BACK: u32 = 3600;
/// …and its expiry this far ahead; past half its life it is made again.
const VALIDITY: u32 = 7 * 86_400;
/// Signatures made per second and UDP worker, at most, by default (SPEC §8).
pub const BUDGET_PER_CORE: u32 = 2000;
/// RRsets whose signatures are kept.
pub const CACHE_ENTRIES: usize = 100_000;

/// The keys of one signed zone.
#[derive(Debug)]
pub struct ZoneKeys {
    pub origin: Name,
    pub keys: Vec<Key>,
    /// The keys published as CDS and CDNSKEY.
    pub cds: Vec<usize>,
    /// Names this key set in the signature cache.
    id: u128,
}

impl ZoneKeys {
    pub fn new(origin: Name, keys: Vec<Key>, cds: Vec<usize>) -> Self {
        let mut hasher = SipHasher13::new();
        for key in &keys {
            hasher.write(&key.dnskey);
        }
        hasher.write(origin.to_lowercase().to_ascii().as_bytes());
        ZoneKeys { origin, keys, cds, id: hasher.finish128().as_u128() }
    }

    /// The records the apex gains: DNSKEY for every key, CDS and CDNSKEY for the
    /// keys in `dnssec_cds_keys` (type, RDATA).
    pub fn apex_records(&self) -> Vec<(RecordType, Vec<u8>)> {
        let mut records: Vec<(RecordType, Vec<u8>)> =
            self.keys.iter().map(|k| (RecordType::DNSKEY, k.dnskey.to_vec())).collect();
        for &i in &self.cds {
            records.push((RecordType::CDS, self.keys[i].ds(&self.origin)));
            records.push((RecordType::CDNSKEY, self.keys[i].dnskey.to_vec()));
        }
        records
    }

    /// The bytes an RRSIG record of this zone takes in a reply whose owner costs
    /// `owner` bytes, for every key.
    pub fn rrsigs_len(&self, owner: usize) -> usize {
        let signer = self.origin.len() + 1;
        self.keys.iter().map(|k| owner + 10 + 18 + signer + k.signature_len()).sum()
    }
}

/// One RRset's signatures: one RRSIG RDATA per key of its zone.
#[derive(Debug)]
pub struct Signed {
    /// Past this second (UNIX time) the signatures are made again.
    refresh_at: u32,
    pub rrsigs: Box<[Box<[u8]>]>,
}

/// Why an RRset has no signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsigned {
    /// The budget of this second is spent.
    Budget,
    /// The records do not parse as their type (not from our zones or services).
    Malformed,
}

/// What signing has done, for metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub made: AtomicU64,
    pub cached: AtomicU64,
    pub refused: AtomicU64,
}

/// The signature cache and budget, one per server, kept across reloads.
pub struct Signatures {
    cache: quick_cache::sync::Cache<u128, Arc<Signed>>,
    /// (this second, signatures made in it).
    window: AtomicU64,
    per_second: AtomicU32,
    /// Keys the cache's hash.
    secret: (u64, u64),
    pub counters: Counters,
}

impl std::fmt::Debug for Signatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signatures {{ cached: {}, per_second: {:?} }}", self.cache.len(), self.per_second)
    }
}

/// An RRset to sign: its owner as signed (the query name for a wildcard expansion),
/// type, class, TTL and records' RDATA (names uncompressed).
#[derive(Debug, Clone, Copy)]
pub struct RRset<'n, I> {
    pub owner: &'n Name,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub rdatas: I,
}

impl Signatures {
    /// A cache of `entries` RRsets and a budget of `per_second` signatures.
    pub fn new(entries: usize, per_second: u32) -> Self {
        Signatures {
            cache: quick_cache::sync::Cache::new(entries),
            window: AtomicU64::new(0),
            per_second: AtomicU32::new(per_second),
            secret: {
                let mut bytes = [0u8; 16];
                // without the OS's randomness the cache still works; its hash is guessable
                let _ = getrandom::fill(&mut bytes);
                let word = |i: usize| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes"));
                (word(0), word(1))
            },
            counters: Counters::default(),
        }
    }

    /// Changes the budget (a reload).
    pub fn set_budget(&self, per_second: u32) {
        self.per_second.store(per_second, Relaxed);
    }

    /// Signatures in the cache.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The signatures of `rrset` by every key of `keys` at `now` (UNIX seconds): cached,
    /// or made when the budget allows (a cached one past half its life is made again,
    /// and still served if the budget refuses).
    pub fn sign<'a, I>(&self, keys: &ZoneKeys, rrset: RRset<'_, I>, now: u32) -> Result<Arc<Signed>, Unsigned>
    where
        I: Iterator<Item = &'a [u8]> + Clone,
    {
        let key = cache_key(self.secret, keys, &rrset);
        let cached = self.cache.get(&key);
        if let Some(signed) = &cached
            && now < signed.refresh_at
        {
            self.counters.cached.fetch_add(1, Relaxed);
            return Ok(signed.clone());
        }
        if !self.take(now) {
            self.counters.refused.fetch_add(1, Relaxed);
            return cached.ok_or(Unsigned::Budget);
        }
        let signed = Arc::new(make(keys, &rrset, now).ok_or(Unsigned::Malformed)?);
        self.counters.made.fetch_add(keys.keys.len() as u64, Relaxed);
        self.cache.insert(key, signed.clone());
        Ok(signed)
    }

    /// The cached signatures of an RRset whose owner is `owner` in wire form (any letter
    /// case), when they are cached and not yet due to be made again:
    /// the fast path's lookup, which makes none.
    pub fn cached<'a>(
        &self,
        keys: &ZoneKeys,
        owner: &[u8],
        fields: (u16, u16, u32),
        rdatas: impl Iterator<Item = &'a [u8]> + Clone,
        now: u32,
    ) -> Option<Arc<Signed>> {
        let signed = self.cache.get(&key_of(self.secret, keys, owner, fields, rdatas))?;
        if now >= signed.refresh_at {
            return None;
        }
        self.counters.cached.fetch_add(1, Relaxed);
        Some(signed)
    }

    /// Takes one signature from this second's budget.
    fn take(&self, now: u32) -> bool {
        let mut current = self.window.load(Relaxed);
        loop {
            let (second, used) = ((current >> 32) as u32, current as u32);
            let next = if second != now {
                u64::from(now) << 32 | 1
            } else if used < self.per_second.load(Relaxed) {
                current + 1
            } else {
                return false;
            };
            match self.window.compare_exchange_weak(current, next, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

/// The cache key: the key set, the owner (letter case ignored), type, class, TTL, and
/// the records in canonical order (a sum of their hashes past 16 records).
fn cache_key<'a, I: Iterator<Item = &'a [u8]> + Clone>(
    secret: (u64, u64),
    keys: &ZoneKeys,
    rrset: &RRset<'_, I>,
) -> u128 {
    let mut owner = [0u8; 255];
    let mut len = 0;
    for label in rrset.owner.iter() {
        owner[len] = label.len() as u8;
        owner[len + 1..len + 1 + label.len()].copy_from_slice(label);
        len += 1 + label.len();
    }
    owner[len] = 0;
    key_of(secret, keys, &owner[..=len], (rrset.rtype, rrset.class, rrset.ttl), rrset.rdatas.clone())
}

/// [`cache_key`] with the owner in wire form, any letter case; keyed
/// with the cache's `secret`, so that nobody outside can make two RRsets collide.
fn key_of<'a>(
    secret: (u64, u64),
    keys: &ZoneKeys,
    owner: &[u8],
    (rtype, class, ttl): (u16, u16, u32),
    rdatas: impl Iterator<Item = &'a [u8]> + Clone,
) -> u128 {
    // the key set keys the hasher; its input is gathered in one buffer where it fits,
    // as SipHash costs per call too
    let mut hasher = SipHasher13::new_with_keys(secret.0 ^ keys.id as u64, secret.1 ^ (keys.id >> 64) as u64);
    let mut buf = [0u8; 512];
    let mut len = 0;
    let mut put = |hasher: &mut SipHasher13, bytes: &[u8], lower: bool| {
        if len + bytes.len() > buf.len() {
            hasher.write(&buf[..len]);
            len = 0;
            if bytes.len() > buf.len() {
                hasher.write(bytes);
                return;
            }
        }
        for (to, from) in buf[len..len + bytes.len()].iter_mut().zip(bytes) {
            *to = if lower { from.to_ascii_lowercase() } else { *from };
        }
        len += bytes.len();
    };
    put(&mut hasher, owner, true);
    let [t0, t1] = rtype.to_be_bytes();
    let [c0, c1] = class.to_be_bytes();
    let [l0, l1, l2, l3] = ttl.to_be_bytes();
    put(&mut hasher, &[t0, t1, c0, c1, l0, l1, l2, l3], false);
    let mut sorted: [&[u8]; 16] = [&[]; 16];
    let mut n = 0;
    for rdata in rdatas.clone() {
        if n == sorted.len() {
            n += 1;
            break;
        }
        sorted[n] = rdata;
        n += 1;
    }
    if n <= sorted.len() {
        let sorted = &mut sorted[..n];
        sorted.sort_unstable();
        for rdata in sorted.iter() {
            put(&mut hasher, &(rdata.len() as u16).to_be_bytes(), false);
            put(&mut hasher, rdata, false);
        }
    } else {
        let sum = rdatas.fold(0u128, |sum, rdata| {
            let mut h = SipHasher13::new_with_keys(secret.1, secret.0);
            h.write(rdata);
            sum.wrapping_add(h.finish128().as_u128())
        });
        put(&mut hasher, &sum.to_le_bytes(), false);
    }
    hasher.write(&buf[..len]);
    hasher.finish128().as_u128()
}

/// Signs `rrset` with every key: RRSIG RDATA whose signer is the zone's origin, labels
/// those of the owner (a wildcard's expansion is signed as the name it answers).
fn make<'a, I: Iterator<Item = &'a [u8]> + Clone>(keys: &ZoneKeys, rrset: &RRset<'_, I>, now: u32) -> Option<Signed> {
    let inception = now.wrapping_sub(INCEPTION_BACK);
    let expiration = now.wrapping_add(VALIDITY);
    let mut rrsigs = Vec::with_capacity(keys.keys.len());
    for key in &keys.keys {
        let input = SigInput {
            type_covered: RecordType::from(rrset.rtype),
            algorithm: Algorithm::from_u8(key.algorithm),
            num_labels: rrset.owner.num_labels(),
            original_ttl: rrset.ttl,
            sig_expiration: SerialNumber::new(expiration),
            sig_inception: SerialNumber::new(inception),
            key_tag: key.tag,
            signer_name: keys.origin.clone(),
        };
        let mut rdata = Vec::with_capacity(128);
        input.emit(&mut BinEncoder::new(&mut rdata)).ok()?;
        let tbs = tbs(&rdata, rrset)?;
        rdata.extend_from_slice(&key.sign(&tbs));
        rrsigs.push(rdata.into_boxed_slice());
    }
    Some(Signed { refresh_at: inception + (VALIDITY + INCEPTION_BACK) / 2, rrsigs: rrsigs.into() })
}

/// The data to be signed (RFC 4034 §3.1.8.1): the RRSIG RDATA before its signature,
/// then each record in canonical form and order (RFC 4034 §6), duplicates dropped.
/// Ours, not hickory's `TBS`: hickory cannot hold the `\000` label of a compact NSEC.
fn tbs<'a, I: Iterator<Item = &'a [u8]> + Clone>(rrsig: &[u8], rrset: &RRset<'_, I>) -> Option<Vec<u8>> {
    let mut owner = Vec::with_capacity(rrset.owner.len() + 1);
    for label in rrset.owner.iter() {
        owner.push(label.len() as u8);
        owner.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    owner.push(0);
    let mut records: Vec<Vec<u8>> = rrset.rdatas.clone().map(|r| canonical(rrset.rtype, r)).collect::<Option<_>>()?;
    records.sort_unstable();
    records.dedup();
    let mut tbs = rrsig.to_vec();
    for rdata in &records {
        tbs.extend_from_slice(&owner);
        tbs.extend_from_slice(&rrset.rtype.to_be_bytes());
        tbs.extend_from_slice(&rrset.class.to_be_bytes());
        tbs.extend_from_slice(&rrset.ttl.to_be_bytes());
        tbs.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
        tbs.extend_from_slice(rdata);
    }
    Some(tbs)
}

/// RDATA in canonical form: the names of the types RFC 4034 §6.2 lists (as RFC 6840
/// §5.1 amends it) lower-cased; None when a name runs past the RDATA.
fn canonical(rtype: u16, rdata: &[u8]) -> Option<Vec<u8>> {
    let mut out = rdata.to_vec();
    // (offset of the first name, names in a row)
    let (start, names) = match rtype {
        2..=5 | 7..=9 | 12 | 39 => (0, 1),
        6 | 14 | 17 => (0, 2),
        15 | 18 | 21 | 36 => (2, 1),
        26 => (2, 2),
        33 => (6, 1),
        35 => {
            // order, preference, then flags, services and regexp as character-strings
            let mut at = 4;
            for _ in 0..3 {
                at += 1 + usize::from(*rdata.get(at)?);
            }
            (at, 1)
        }
        _ => return Some(out),
    };
    let mut at = start;
    for _ in 0..names {
        loop {
            let len = usize::from(*out.get(at)?);
            out.get_mut(at + 1..at + 1 + len)?.make_ascii_lowercase();
            at += 1 + len;
            if len == 0 {
                break;
            }
        }
    }
    Some(out)
}

/// The type bitmap of an NSEC (RFC 4034 §4.1.2) listing `types`.
pub fn type_bitmap(types: &mut [u16]) -> Vec<u8> {
    types.sort_unstable();
    let mut out = Vec::new();
    for window in types.chunk_by(|a, b| a >> 8 == b >> 8) {
        let mut bits = [0u8; 32];
        for t in window {
            let low = (t & 0xFF) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
        }
        let len = window.iter().map(|t| (t & 0xFF) as usize / 8 + 1).max().unwrap_or(0);
        out.push((window[0] >> 8) as u8);
        out.push(len as u8);
        out.extend_from_slice(&bits[..len]);
    }
    out
}

/// The RDATA of a compact denial's NSEC at `name` (RFC 9824): next name `\000.name`,
/// lower-cased, then the bitmap of `types` (RRSIG and NSEC added).
pub fn compact_nsec(name: &Name, types: &mut Vec<u16>) -> Vec<u8> {
    let mut rdata = vec![1, 0];
    for label in name.iter() {
        rdata.push(label.len() as u8);
        rdata.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    rdata.push(0);
    types.extend_from_slice(&[u16::from(RecordType::RRSIG), u16::from(RecordType::NSEC)]);
    types.dedup();
    rdata.extend_from_slice(&type_bitmap(types));
    rdata
}

/// NXNAME (RFC 9824): the type an NSEC lists for a name that does not exist.
pub const NXNAME: u16 = 128;

/// Now, in UNIX seconds: the kernel's coarse clock (its last tick, read without a
/// system call in a few nanoseconds; signatures count whole seconds).
pub fn now() -> u32 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE) {
        Ok(t) => t.tv_sec() as u32,
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32),
    }
}

#[cfg(test)]
mod tests;
