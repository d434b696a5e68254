//! The query path's lookup key for a name: its wire form, lower-cased, as read
//! straight from a query's question without building a [`Name`].

use hickory_proto::rr::Name;

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

    /// Reads the uncompressed name at the start of `wire` (labels only, no pointers):
    /// its key and how many bytes it took; None when it is not such a name.
    pub fn read(wire: &[u8]) -> Option<(NameKey, usize)> {
        let mut at = 0;
        loop {
            let len = usize::from(*wire.get(at)?);
            if len == 0 {
                break;
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
        let name = &wire[..=at];
        let mut key = NameKey { bytes: [0; 255], len: name.len() as u8 };
        key.bytes[..name.len()].copy_from_slice(name);
        // the length bytes (at most 63) lie below 'A': lower-casing leaves them be
        key.bytes[..name.len()].make_ascii_lowercase();
        Some((key, name.len()))
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
    fn a_key_is_the_lowercased_wire_form_whether_built_or_read() {
        let name = Name::from_ascii("WwW.Example.").unwrap();
        let key = NameKey::of(&name);
        assert_eq!(key.as_bytes(), b"\x03www\x07example\x00");
        let (read, used) = NameKey::read(b"\x03WWW\x07exAMPLE\x00\x00\x01").unwrap();
        assert_eq!((read.as_bytes(), used), (key.as_bytes(), 13));
        assert_eq!(NameKey::of(&Name::root()).as_bytes(), b"\x00");
    }

    #[test]
    fn pointers_long_labels_and_long_names_are_not_read() {
        assert!(NameKey::read(b"\x03www\xc0\x0c").is_none(), "a pointer");
        assert!(NameKey::read(b"\x40").is_none(), "label type 01");
        assert!(NameKey::read(b"\x03www").is_none(), "no root label");
        let name = |last: usize| {
            let mut wire = Vec::new();
            for len in [63, 63, 63, last] {
                wire.push(len as u8);
                wire.extend(std::iter::repeat_n(b'a', len));
            }
            wire.push(0);
            wire
        };
        assert!(NameKey::read(&name(62)).is_none(), "256 bytes");
        let (key, used) = NameKey::read(&name(61)).unwrap();
        assert_eq!((key.as_bytes().len(), used), (255, 255));
    }
}
