//! The rise/fall state machine of one probe key: pure, no I/O.

use std::fmt;

/// A probe key's health. `Unknown` (no probe yet) counts as healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Up,
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        })
    }
}

/// A change of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Health,
    pub to: Health,
}

/// The first probe decides at once; after that `rise` consecutive passes make it up
/// and `fall` consecutive failures make it down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiseFall {
    health: Health,
    rise: u32,
    fall: u32,
    passes: u32,
    fails: u32,
}

impl RiseFall {
    pub fn new(rise: u32, fall: u32) -> Self {
        RiseFall { health: Health::Unknown, rise, fall, passes: 0, fails: 0 }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Consecutive passes and failures so far.
    pub fn streak(&self) -> (u32, u32) {
        (self.passes, self.fails)
    }

    /// A failure that makes it down at once, without waiting for `fall` (a backend
    /// reporting itself down).
    pub fn down_now(&mut self) -> Option<Transition> {
        self.passes = 0;
        self.fails = self.fails.saturating_add(1);
        let from = std::mem::replace(&mut self.health, Health::Down);
        (from != Health::Down).then_some(Transition { from, to: Health::Down })
    }

    /// Takes one probe outcome; returns the transition it caused, if any.
    pub fn observe(&mut self, passed: bool) -> Option<Transition> {
        if passed {
            self.passes += 1;
            self.fails = 0;
        } else {
            self.fails += 1;
            self.passes = 0;
        }
        let to = match self.health {
            Health::Unknown if passed => Health::Up,
            Health::Unknown => Health::Down,
            Health::Down if self.passes >= self.rise => Health::Up,
            Health::Up if self.fails >= self.fall => Health::Down,
            same => same,
        };
        let from = std::mem::replace(&mut self.health, to);
        (from != to).then_some(Transition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(machine: &mut RiseFall, outcomes: &str) -> Vec<Health> {
        outcomes
            .chars()
            .map(|c| {
                machine.observe(c == '+');
                machine.health()
            })
            .collect()
    }

    #[test]
    fn the_first_probe_decides_at_once() {
        assert_eq!(run(&mut RiseFall::new(2, 3), "+"), [Health::Up]);
        assert_eq!(run(&mut RiseFall::new(2, 3), "-"), [Health::Down]);
    }

    #[test]
    fn fall_consecutive_failures_make_it_down() {
        use Health::*;
        assert_eq!(run(&mut RiseFall::new(2, 3), "+--+---"), [Up, Up, Up, Up, Up, Up, Down]);
    }

    #[test]
    fn rise_consecutive_passes_make_it_up() {
        use Health::*;
        assert_eq!(run(&mut RiseFall::new(2, 3), "-+-++"), [Down, Down, Down, Down, Up]);
    }

    #[test]
    fn down_now_skips_fall_and_rise_still_counts() {
        let mut m = RiseFall::new(2, 3);
        m.observe(true);
        assert_eq!(m.down_now(), Some(Transition { from: Health::Up, to: Health::Down }));
        assert_eq!(m.down_now(), None);
        assert_eq!(run(&mut m, "++"), [Health::Down, Health::Up]);
    }

    #[test]
    fn transitions_are_reported_once() {
        let mut m = RiseFall::new(1, 1);
        assert_eq!(m.observe(true), Some(Transition { from: Health::Unknown, to: Health::Up }));
        assert_eq!(m.observe(true), None);
        assert_eq!(m.observe(false), Some(Transition { from: Health::Up, to: Health::Down }));
    }
}
