//! Load reports (SPEC §9): the line a backend sends about itself, in HAProxy's
//! agent-check grammar. Pure: bytes in, a [`Report`] or the reason it is refused out.
//!
//! Words are case-insensitive and separated by spaces, tabs or commas; everything from
//! `#` on and `maxconn:N` are ignored. `N%` (0–100, digits only, as HAProxy writes it)
//! scales the configured weight; `drain` (and 0%) drains; `down`, `fail`, `stopped` and
//! `maint` say down; `up` and `ready` say up. Each line stands alone: a word left out
//! means its default (full weight, up). Where words conflict, down beats drain beats up,
//! and the last percentage counts.

use std::fmt;

/// The longest line read from an agent, its newline included.
pub const MAX_LINE: usize = 256;

/// What a backend said of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Report {
    /// 0–100: the share of its configured weight it takes.
    pub percent: u8,
    pub state: Reported,
}

/// The state a backend reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reported {
    Up,
    Drain,
    Down,
}

impl Report {
    /// A backend with nothing to say: full weight, up.
    pub const FULL: Report = Report { percent: 100, state: Reported::Up };
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            Reported::Up => write!(f, "up {}%", self.percent),
            Reported::Drain => f.write_str("drain"),
            Reported::Down => f.write_str("down"),
        }
    }
}

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reported::Up => "up",
            Reported::Drain => "drain",
            Reported::Down => "down",
        })
    }
}

/// Parses one report: a header value, or an agent's line without its newline (a
/// trailing carriage return is allowed).
pub fn parse(line: &[u8]) -> Result<Report, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() >= MAX_LINE {
        return Err(format!("report longer than {} bytes", MAX_LINE - 1));
    }
    if let Some(at) = line.iter().position(|&b| !(b == b'\t' || (0x20..0x7f).contains(&b))) {
        return Err(format!("report is not text (byte {:#04x} at {at})", line[at]));
    }
    // checked above: printable ASCII and tabs only
    let text = std::str::from_utf8(line).expect("ASCII");
    let text = text.split('#').next().unwrap_or_default();
    let (mut percent, mut drain, mut down, mut recognised) = (None, false, false, false);
    for word in text.split([' ', '\t', ',']).filter(|w| !w.is_empty()) {
        let lower = word.to_ascii_lowercase();
        match lower.as_str() {
            "up" | "ready" => {}
            "drain" => drain = true,
            "down" | "fail" | "stopped" | "maint" => down = true,
            w if w.starts_with("maxconn:") && w.len() > 8 && w[8..].bytes().all(|b| b.is_ascii_digit()) => continue,
            w if w.ends_with('%') => percent = Some(percentage(word)?),
            _ => return Err(format!("unknown word {word:?} in report {text:?}")),
        }
        recognised = true;
    }
    if !recognised {
        return Err(format!("no recognised word in report {:?}", text.trim()));
    }
    let percent = percent.unwrap_or(100);
    let state = if down {
        Reported::Down
    } else if drain || percent == 0 {
        Reported::Drain
    } else {
        Reported::Up
    };
    Ok(Report { percent, state })
}

fn percentage(word: &str) -> Result<u8, String> {
    let digits = &word[..word.len() - 1];
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("weight {word:?} is not a whole percentage"));
    }
    match digits.parse::<u8>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(format!("weight {word} is outside 0–100%")),
    }
}

/// Takes the first line of what an agent sent: Ok with it (newline cut) once a newline
/// came; Err when `read` is full ([`MAX_LINE`] bytes) or closed without one.
pub fn first_line(read: &[u8], closed: bool) -> Option<Result<&[u8], String>> {
    match read.iter().position(|&b| b == b'\n') {
        Some(end) => Some(Ok(&read[..end])),
        None if read.len() >= MAX_LINE => Some(Err(format!("no newline within {MAX_LINE} bytes"))),
        None if closed && read.is_empty() => Some(Err("closed without a report".into())),
        None if closed => Some(Err("closed before the report's newline".into())),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(line: &str) -> Result<Report, String> {
        parse(line.as_bytes())
    }

    fn up(percent: u8) -> Result<Report, String> {
        Ok(Report { percent, state: Reported::Up })
    }

    #[test]
    fn the_words_of_haproxy_agents() {
        assert_eq!(report("up"), up(100));
        assert_eq!(report("ready"), up(100));
        assert_eq!(report("75%"), up(75));
        assert_eq!(report("up 50%"), up(50));
        assert_eq!(report("UP,25%\r"), up(25));
        assert_eq!(report("  Ready\t 100% "), up(100));
        assert_eq!(report("drain"), Ok(Report { percent: 100, state: Reported::Drain }));
        assert_eq!(report("0%"), Ok(Report { percent: 0, state: Reported::Drain }));
        for word in ["down", "fail", "stopped", "maint", "MAINT"] {
            assert_eq!(report(word).map(|r| r.state), Ok(Reported::Down), "{word}");
        }
    }

    #[test]
    fn comments_and_maxconn_are_ignored() {
        assert_eq!(report("up 40% maxconn:30 # busy: 60 of 100 workers"), up(40));
        assert_eq!(report("maxconn:10,90%"), up(90));
        assert!(report("maxconn:10").unwrap_err().contains("no recognised word"));
        assert!(report("# only a comment").unwrap_err().contains("no recognised word"));
        assert!(report("").unwrap_err().contains("no recognised word"));
    }

    #[test]
    fn down_beats_drain_beats_up_and_the_last_percentage_counts() {
        assert_eq!(report("up drain").map(|r| r.state), Ok(Reported::Drain));
        assert_eq!(report("drain 50% down").map(|r| r.state), Ok(Reported::Down));
        assert_eq!(report("10% 60%"), up(60));
        assert_eq!(report("up 0%").map(|r| r.state), Ok(Reported::Drain));
    }

    #[test]
    fn bad_reports_are_refused_with_a_reason() {
        assert!(report("101%").unwrap_err().contains("outside 0–100%"));
        assert!(report("999%").unwrap_err().contains("outside"));
        assert!(report("-5%").unwrap_err().contains("not a whole percentage"));
        assert!(report("12.5%").unwrap_err().contains("not a whole percentage"));
        assert!(report("%").unwrap_err().contains("not a whole percentage"));
        assert!(report("up sideways").unwrap_err().contains("unknown word \"sideways\""));
        assert!(report("maxconn:").unwrap_err().contains("unknown word"));
        assert!(parse(b"up\x00").unwrap_err().contains("not text"));
        assert!(parse("up ü".as_bytes()).unwrap_err().contains("not text"));
        assert!(parse(&[b'u'; 300]).unwrap_err().contains("longer than"));
    }

    #[test]
    fn a_line_needs_its_newline_within_the_limit() {
        assert_eq!(first_line(b"up 50%\nrest", false), Some(Ok(&b"up 50%"[..])));
        assert_eq!(first_line(b"up 5", false), None);
        assert!(first_line(b"up 5", true).unwrap().unwrap_err().contains("before the report's newline"));
        assert!(first_line(b"", true).unwrap().unwrap_err().contains("without a report"));
        assert!(first_line(&[b' '; MAX_LINE], false).unwrap().unwrap_err().contains("no newline within 256"));
    }
}
