//! Zone files (RFC 1035 §5.1) read in one pass, record by record, each with its file
//! and line, into wire-form RDATA: no tree of parsed records is ever built, so a
//! million-record zone costs its index and no more.
//!
//! A, AAAA, NS, CNAME, PTR, MX, TXT and SOA are read here; every other type goes
//! through hickory's parser one record at a time, so all the types it knows load.

use super::ZoneError;
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::serialize::txt::{Parser, parse_ttl};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;

/// $INCLUDEs nest at most this deep.
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// One record as read: RDATA in wire form, names in it uncompressed and as written.
pub struct Entry<'a> {
    pub line: usize,
    pub owner: &'a Name,
    pub class: u16,
    pub ttl: u32,
    pub rtype: RecordType,
    pub rdata: &'a [u8],
}

/// Reads `text` (the file at `path`) with `origin` as its first $ORIGIN, handing every
/// record to `sink`; a sink's error is reported at the record's line. Reading goes on
/// past a bad record, up to `MAX_ERRORS`.
pub fn read(
    origin: &Name,
    path: &Path,
    text: &str,
    sink: &mut dyn FnMut(&Entry) -> Result<(), String>,
) -> Vec<ZoneError> {
    let mut state = State {
        origin: origin.clone(),
        default_ttl: None,
        last_ttl: None,
        owner: None,
        rdata: Vec::new(),
        errors: Vec::new(),
    };
    state.file(path, text, 0, sink);
    state.errors
}

/// At most this many errors are reported from one zone.
const MAX_ERRORS: usize = 20;

struct State {
    origin: Name,
    default_ttl: Option<u32>,
    /// RFC 1035: a record without a TTL and no $TTL takes the last one given.
    last_ttl: Option<u32>,
    owner: Option<Name>,
    /// Reused for each record's RDATA.
    rdata: Vec<u8>,
    errors: Vec<ZoneError>,
}

impl State {
    fn file(&mut self, path: &Path, text: &str, depth: usize, sink: &mut dyn FnMut(&Entry) -> Result<(), String>) {
        let mut lines = Logical { text, at: 0, line: 1 };
        let mut tokens = Vec::new();
        while self.errors.len() < MAX_ERRORS {
            let (line, blank) = match lines.next(&mut tokens) {
                Ok(Some(found)) => found,
                Ok(None) => return,
                Err((line, message)) => {
                    self.error(path, line, String::new(), message);
                    return;
                }
            };
            if let Err((key, message)) = self.logical(path, line, blank, &tokens, depth, sink) {
                self.error(path, line, key, message);
            }
        }
    }

    fn error(&mut self, path: &Path, line: usize, key: String, message: String) {
        self.errors.push(ZoneError { file: path.to_path_buf(), line, column: 0, key, message });
    }

    /// One logical line: a directive or a record.
    fn logical(
        &mut self,
        path: &Path,
        line: usize,
        blank: bool,
        tokens: &[&str],
        depth: usize,
        sink: &mut dyn FnMut(&Entry) -> Result<(), String>,
    ) -> Result<(), (String, String)> {
        let mut rest = tokens;
        if !blank {
            let first = tokens[0];
            if first.starts_with('$') {
                return self.directive(path, tokens, depth, sink);
            }
            let owner = name(first, &self.origin).map_err(|m| (first.to_string(), m))?;
            self.owner = Some(owner);
            rest = &tokens[1..];
        }
        let Some(owner) = self.owner.clone() else {
            return Err((String::new(), "a record without an owner name (the first record must name one)".into()));
        };
        let key = || owner.to_string();
        let (mut ttl, mut class, mut rtype) = (None, None, None);
        while let [word, tail @ ..] = rest {
            rest = tail;
            if word.starts_with(|c: char| c.is_ascii_digit())
                && let Ok(t) = parse_ttl(word)
                && ttl.is_none()
            {
                ttl = Some(t);
            } else if let Some(c) = upper(word).and_then(|u| DNSClass::from_str(&u).ok()).filter(|_| class.is_none()) {
                class = Some(c);
            } else {
                let found = upper(word).and_then(|u| RecordType::from_str(&u).ok());
                rtype = Some(found.ok_or_else(|| (key(), format!("cannot parse the record: unknown type {word:?}")))?);
                break;
            }
        }
        let rtype = rtype.ok_or_else(|| (key(), "cannot parse the record: it has no type".into()))?;
        if let Some(t) = ttl {
            self.last_ttl = Some(t);
        }
        let ttl = ttl
            .or(self.default_ttl)
            .or(self.last_ttl)
            .ok_or_else(|| (key(), "the record has no TTL: give it one, or put a $TTL line above it".to_string()))?;
        let class = class.unwrap_or(DNSClass::IN);
        self.rdata.clear();
        rdata(rtype, rest, &self.origin, &mut self.rdata)
            .map_err(|m| (key(), format!("cannot parse the {rtype} record: {m}")))?;
        let entry = Entry { line, owner: &owner, class: class.into(), ttl, rtype, rdata: &self.rdata };
        sink(&entry).map_err(|m| (key(), m))
    }

    fn directive(
        &mut self,
        path: &Path,
        tokens: &[&str],
        depth: usize,
        sink: &mut dyn FnMut(&Entry) -> Result<(), String>,
    ) -> Result<(), (String, String)> {
        let which = tokens[0].to_ascii_uppercase();
        let key = || which.clone();
        match (which.as_str(), &tokens[1..]) {
            ("$ORIGIN", [origin]) => self.origin = name(origin, &self.origin).map_err(|m| (key(), m))?,
            ("$TTL", [ttl]) => self.default_ttl = Some(parse_ttl(ttl).map_err(|e| (key(), e.to_string()))?),
            ("$INCLUDE", [file, origin @ ..]) if origin.len() <= 1 => {
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err((key(), format!("$INCLUDEs nest deeper than {MAX_INCLUDE_DEPTH}")));
                }
                let included = path.parent().unwrap_or(Path::new(".")).join(file.trim_matches('"'));
                let text = std::fs::read_to_string(&included)
                    .map_err(|e| (key(), format!("cannot read {}: {e}", included.display())))?;
                // RFC 1035: the origin given applies to the included file only
                let saved = self.origin.clone();
                if let [origin] = origin {
                    self.origin = name(origin, &saved).map_err(|m| (key(), m))?;
                }
                self.file(&included, &text, depth + 1, sink);
                self.origin = saved;
            }
            ("$ORIGIN" | "$TTL" | "$INCLUDE", _) => return Err((key(), "wrong number of arguments".into())),
            _ => return Err((key(), "unknown directive".into())),
        }
        Ok(())
    }
}

/// A word in upper case, if it is short enough to be a class or a type.
fn upper(word: &str) -> Option<String> {
    (word.len() <= 12).then(|| word.to_ascii_uppercase())
}

/// A name as written in the file: `@` is the origin, names without a final dot are
/// relative to it.
fn name(word: &str, origin: &Name) -> Result<Name, String> {
    if word == "@" {
        return Ok(origin.clone());
    }
    let mut name = Name::parse(word, Some(origin)).map_err(|e| format!("bad name {word:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// Appends `name` uncompressed, as written.
fn push_name(name: &Name, out: &mut Vec<u8>) {
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

/// RDATA in wire form from its words.
fn rdata(rtype: RecordType, words: &[&str], origin: &Name, out: &mut Vec<u8>) -> Result<(), String> {
    let one = || match words {
        [word] => Ok(*word),
        _ => Err(format!("takes one field, not {}", words.len())),
    };
    match rtype {
        RecordType::A => out.extend_from_slice(&Ipv4Addr::from_str(one()?).map_err(|e| e.to_string())?.octets()),
        RecordType::AAAA => out.extend_from_slice(&Ipv6Addr::from_str(one()?).map_err(|e| e.to_string())?.octets()),
        RecordType::NS | RecordType::CNAME | RecordType::PTR => push_name(&name(one()?, origin)?, out),
        RecordType::MX => {
            let [preference, exchange] = words else { return Err("takes a preference and a name".into()) };
            out.extend_from_slice(&preference.parse::<u16>().map_err(|e| format!("preference: {e}"))?.to_be_bytes());
            push_name(&name(exchange, origin)?, out);
        }
        RecordType::TXT => {
            if words.is_empty() {
                return Err("takes at least one string".into());
            }
            for word in words {
                character_string(word, out)?;
            }
        }
        RecordType::SOA => {
            let [mname, rname, serial, times @ ..] = words else { return Err("takes seven fields".into()) };
            if times.len() != 4 {
                return Err("takes seven fields".into());
            }
            push_name(&name(mname, origin)?, out);
            push_name(&name(rname, origin)?, out);
            out.extend_from_slice(&serial.parse::<u32>().map_err(|e| format!("serial: {e}"))?.to_be_bytes());
            for time in times {
                out.extend_from_slice(&parse_ttl(time).map_err(|e| e.to_string())?.to_be_bytes());
            }
        }
        other => by_hickory(other, words, origin, out)?,
    }
    Ok(())
}

/// A character-string (RFC 1035 §5.1): quoted or not, `\X` is X and `\DDD` the byte DDD.
fn character_string(word: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let inner = word.strip_prefix('"').and_then(|w| w.strip_suffix('"')).unwrap_or(word);
    let at = out.len();
    out.push(0);
    let mut bytes = inner.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(next) = bytes.next() else { return Err(format!("{word} ends in a lone backslash")) };
        if !next.is_ascii_digit() {
            out.push(next);
            continue;
        }
        let digits = [Some(next), bytes.next(), bytes.next()];
        let value = digits.iter().try_fold(0u32, |v, d| match d {
            Some(d) if d.is_ascii_digit() => Some(v * 10 + u32::from(d - b'0')),
            _ => None,
        });
        out.push(value.and_then(|v| u8::try_from(v).ok()).ok_or_else(|| format!("{word}: a bad \\DDD escape"))?);
    }
    out[at] = u8::try_from(out.len() - at - 1).map_err(|_| format!("a string is over 255 bytes: {word}"))?;
    Ok(())
}

/// Any other type: hickory parses it as the only record of a zone of one line.
fn by_hickory(rtype: RecordType, words: &[&str], origin: &Name, out: &mut Vec<u8>) -> Result<(), String> {
    let text = format!("@ 0 IN {rtype} {}\n", words.join(" "));
    let (_, sets) = Parser::new(text, None, Some(origin.clone())).parse().map_err(|e| e.to_string())?;
    let record = sets.into_values().flat_map(|s| s.into_parts().records).next().ok_or("no record")?;
    let start = out.len() as u32;
    let mut encoder = BinEncoder::with_offset(out, start);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    record.data.emit(&mut encoder).map_err(|e| e.to_string())
}

/// Logical lines: a record's words, across parentheses, without comments.
struct Logical<'t> {
    text: &'t str,
    at: usize,
    line: usize,
}

impl<'t> Logical<'t> {
    /// The next logical line with words: the line it starts on, whether it starts with
    /// blank space (the owner is the last one), its words as written.
    fn next(&mut self, words: &mut Vec<&'t str>) -> Result<Option<(usize, bool)>, (usize, String)> {
        let bytes = self.text.as_bytes();
        loop {
            words.clear();
            if self.at >= bytes.len() {
                return Ok(None);
            }
            let (first, blank) = (self.line, matches!(bytes[self.at], b' ' | b'\t'));
            let mut open = None;
            while let Some(&b) = bytes.get(self.at) {
                match b {
                    b'\n' => {
                        self.at += 1;
                        self.line += 1;
                        if open.is_none() {
                            break;
                        }
                    }
                    b' ' | b'\t' | b'\r' => self.at += 1,
                    b';' => {
                        while bytes.get(self.at).is_some_and(|&c| c != b'\n') {
                            self.at += 1;
                        }
                    }
                    b'(' if open.is_none() => {
                        open = Some(self.line);
                        self.at += 1;
                    }
                    b'(' => return Err((self.line, "a '(' inside parentheses".into())),
                    b')' if open.is_some() => {
                        open = None;
                        self.at += 1;
                    }
                    b')' => return Err((self.line, "a ')' without its '('".into())),
                    _ => {
                        let start = self.at;
                        self.word(b == b'"')?;
                        // every word ends at an ASCII byte or the end: a char boundary
                        words.push(&self.text[start..self.at]);
                    }
                }
            }
            if let Some(line) = open {
                return Err((line, "a '(' without its ')'".into()));
            }
            if !words.is_empty() {
                return Ok(Some((first, blank)));
            }
        }
    }

    /// Moves past one word; a quoted one ends at its closing quote.
    fn word(&mut self, quoted: bool) -> Result<(), (usize, String)> {
        let bytes = self.text.as_bytes();
        let start_line = self.line;
        if quoted {
            self.at += 1;
        }
        loop {
            let Some(&b) = bytes.get(self.at) else {
                return match quoted {
                    true => Err((start_line, "a quoted string without its closing quote".into())),
                    false => Ok(()),
                };
            };
            match b {
                b'\\' => {
                    if bytes.get(self.at + 1) == Some(&b'\n') {
                        self.line += 1;
                    }
                    self.at = (self.at + 2).min(bytes.len());
                    // past the rest of an escaped multi-byte character
                    while bytes.get(self.at).is_some_and(|c| c & 0xC0 == 0x80) {
                        self.at += 1;
                    }
                }
                b'"' if quoted => {
                    self.at += 1;
                    return Ok(());
                }
                b'\n' if quoted => {
                    self.line += 1;
                    self.at += 1;
                }
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' if !quoted => return Ok(()),
                _ => self.at += 1,
            }
        }
    }
}
