//! Names as the query path looks them up: a table keyed by a name's wire form,
//! lower-cased, that a query's question finds as sent (any letter case), hashed and
//! compared in place, without building a [`Name`] or a key.

use hashbrown::HashTable;
use hickory_proto::rr::Name;
use std::hash::Hasher;

/// Values by name, case-insensitively.
#[derive(Debug)]
pub struct NameTable<V> {
    table: HashTable<(Box<[u8]>, V)>,
}

impl<V> Default for NameTable<V> {
    fn default() -> Self {
        NameTable { table: HashTable::new() }
    }
}

impl<V> NameTable<V> {
    /// Sets the value of `name`, replacing any it had.
    pub fn insert(&mut self, name: &Name, value: V) {
        let key: Box<[u8]> = NameKey::of(name).as_bytes().into();
        let hash = wire_name_hash(&key);
        match self.table.find_mut(hash, |(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => drop(self.table.insert_unique(hash, (key, value), |(k, _)| wire_name_hash(k))),
        }
    }

    /// The value of `name`, inserted with `V::default()` when it has none.
    pub fn get_or_default(&mut self, name: &Name) -> &mut V
    where
        V: Default,
    {
        let key = NameKey::of(name);
        let (wire, hash) = (key.as_bytes(), wire_name_hash(key.as_bytes()));
        match self.table.find_entry(hash, |(k, _)| same_name(k, wire)) {
            Ok(entry) => &mut entry.into_mut().1,
            Err(absent) => {
                let table = absent.into_table();
                let entry = table.insert_unique(hash, (wire.into(), V::default()), |(k, _)| wire_name_hash(k));
                &mut entry.into_mut().1
            }
        }
    }

    /// Inserts `key` (a lower-cased name in wire form) unless it is there; whether it
    /// was not.
    pub fn insert_new(&mut self, key: &[u8], value: V) -> bool {
        let hash = wire_name_hash(key);
        if self.table.find(hash, |(k, _)| **k == *key).is_some() {
            return false;
        }
        self.table.insert_unique(hash, (key.into(), value), |(k, _)| wire_name_hash(k));
        true
    }

    pub fn get(&self, name: &Name) -> Option<&V> {
        let key = NameKey::of(name);
        self.get_wire(key.as_bytes(), wire_name_hash(key.as_bytes()))
    }

    /// The value of the name whose wire form (any letter case) is `wire`, with
    /// `hash` its [`wire_name_hash`].
    pub fn get_wire(&self, wire: &[u8], hash: u64) -> Option<&V> {
        self.table.find(hash, |(k, _)| same_name(k, wire)).map(|(_, v)| v)
    }

    /// The stored key (lower-cased) and value of the name `wire` (any letter case).
    pub fn key_value_wire(&self, wire: &[u8]) -> Option<(&[u8], &V)> {
        self.table.find(wire_name_hash(wire), |(k, _)| same_name(k, wire)).map(|(k, v)| (&**k, v))
    }

    pub fn contains_wire(&self, wire: &[u8]) -> bool {
        self.key_value_wire(wire).is_some()
    }

    /// Every key (lower-cased wire form) with its value, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.table.iter().map(|(k, v)| (&**k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&[u8], &mut V)> {
        self.table.iter_mut().map(|(k, v)| (&**k, v))
    }

    /// The same keys with each value turned by `f`, which may drop an entry.
    pub fn filter_map<W>(self, mut f: impl FnMut(&[u8], V) -> Option<W>) -> NameTable<W> {
        let mut table = HashTable::with_capacity(self.table.len());
        for (key, value) in self.table {
            if let Some(value) = f(&key, value) {
                table.insert_unique(wire_name_hash(&key), (key, value), |(k, _): &(Box<[u8]>, W)| wire_name_hash(k));
            }
        }
        NameTable { table }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn shrink_to_fit(&mut self) {
        self.table.shrink_to_fit(|(k, _)| wire_name_hash(k));
    }
}

/// A hash of a name in wire form (length-prefixed labels, the root's 0 last),
/// lower-cased: names that differ in case hash alike. Eight bytes at a time; the last
/// word of a name of eight bytes or more is its last eight bytes (overlapping the word
/// before), so no byte is copied.
pub fn wire_name_hash(wire: &[u8]) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    let word = |chunk: &[u8]| lower(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
    let mut chunks = wire.chunks_exact(8);
    for chunk in &mut chunks {
        hasher.write_u64(word(chunk));
    }
    match chunks.remainder().len() {
        0 => {}
        _ if wire.len() >= 8 => hasher.write_u64(word(&wire[wire.len() - 8..])),
        _ => hasher.write_u64(lower(wire.iter().rev().fold(0, |v, b| v << 8 | u64::from(*b)))),
    }
    hasher.finish()
}

/// Whether `key` (lower-cased) is `wire` in any letter case; eight bytes at a time.
fn same_name(key: &[u8], wire: &[u8]) -> bool {
    if key.len() != wire.len() {
        return false;
    }
    let (mut keys, mut wires) = (key.chunks_exact(8), wire.chunks_exact(8));
    let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    if (&mut keys).zip(&mut wires).any(|(k, w)| word(k) != lower(word(w))) {
        return false;
    }
    keys.remainder().iter().zip(wires.remainder()).all(|(k, w)| *k == w.to_ascii_lowercase())
}

/// ASCII A–Z to a–z in each byte of a word, other bytes as they are.
fn lower(word: u64) -> u64 {
    const EACH: u64 = 0x0101_0101_0101_0101;
    let low7 = word & (0x7F * EACH);
    // a byte's top bit is set past 'Z', and from 'A' on
    let above_z = low7 + (0x7F - u64::from(b'Z')) * EACH;
    let from_a = low7 + (0x80 - u64::from(b'A')) * EACH;
    let upper = (from_a ^ above_z) & !word & (0x80 * EACH);
    word | (upper >> 2)
}

/// The length of the uncompressed name at the start of `wire` (labels only, no
/// pointers, at most 255 bytes), its root label included; None when it is not such a
/// name.
pub fn wire_name_len(wire: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let len = usize::from(*wire.get(at)?);
        if len == 0 {
            return Some(at + 1);
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
        // the root label must land within 255 bytes
        if at >= 255 {
            return None;
        }
    }
}

/// A name in uncompressed wire form (its root label included), lower-cased: at most
/// 255 bytes, on the stack.
#[derive(Clone, Copy)]
pub struct NameKey {
    bytes: [u8; 255],
    len: u8,
}

impl NameKey {
    /// The key of `name` (a fully qualified name).
    pub fn of(name: &Name) -> NameKey {
        let mut key = NameKey { bytes: [0; 255], len: 0 };
        let mut at = 0;
        for label in name.iter() {
            key.bytes[at] = label.len() as u8;
            for (to, from) in key.bytes[at + 1..at + 1 + label.len()].iter_mut().zip(label) {
                *to = from.to_ascii_lowercase();
            }
            at += 1 + label.len();
        }
        // the root label: the array is zeroed
        key.len = (at + 1) as u8;
        key
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for NameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NameKey({:?})", self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_found_in_any_letter_case() {
        let mut table = NameTable::default();
        table.insert(&Name::from_ascii("WwW.Example.").unwrap(), 1);
        table.insert(&Name::from_ascii("www.example.").unwrap(), 2);
        assert_eq!(table.len(), 1, "the same name, replaced");
        assert_eq!(NameKey::of(&Name::from_ascii("WwW.Example.").unwrap()).as_bytes(), b"\x03www\x07example\x00");
        let sent = b"\x03WWW\x07exAMPLE\x00";
        assert_eq!(table.get_wire(sent, wire_name_hash(sent)), Some(&2));
        assert_eq!(table.get(&Name::from_ascii("www.EXAMPLE.").unwrap()), Some(&2));
        let other = b"\x03wwx\x07example\x00";
        assert_eq!(table.get_wire(other, wire_name_hash(other)), None);
        // a difference past the first eight bytes, and in the last few, is seen too
        for other in [&b"\x03wxw\x07example\x00"[..], b"\x03www\x07exampld\x00", b"\x03www\x07exam\x00"] {
            assert!(!same_name(NameKey::of(&Name::from_ascii("www.example.").unwrap()).as_bytes(), other));
        }
        assert_eq!(NameKey::of(&Name::root()).as_bytes(), b"\x00");
    }

    #[test]
    fn case_folding_touches_letters_only() {
        // every byte value: only A–Z change
        for byte in 0..=255u8 {
            let word = u64::from_le_bytes([byte, b'Q', 0, 0x80 | b'Q', b'@', b'[', 0xFF, byte]);
            let expected = u64::from_le_bytes([
                byte.to_ascii_lowercase(),
                b'q',
                0,
                0x80 | b'Q',
                b'@',
                b'[',
                0xFF,
                byte.to_ascii_lowercase(),
            ]);
            assert_eq!(lower(word), expected, "{byte:#x}");
        }
    }

    #[test]
    fn pointers_long_labels_and_long_names_are_not_read() {
        assert_eq!(wire_name_len(b"\x03www\x00\x00\x01"), Some(5));
        assert_eq!(wire_name_len(b"\x03www\xc0\x0c"), None, "a pointer");
        assert_eq!(wire_name_len(b"\x40"), None, "label type 01");
        assert_eq!(wire_name_len(b"\x03www"), None, "no root label");
        let name = |last: usize| {
            let mut wire = Vec::new();
            for len in [63, 63, 63, last] {
                wire.push(len as u8);
                wire.extend(std::iter::repeat_n(b'a', len));
            }
            wire.push(0);
            wire
        };
        assert_eq!(wire_name_len(&name(62)), None, "256 bytes");
        assert_eq!(wire_name_len(&name(61)), Some(255));
    }
}
