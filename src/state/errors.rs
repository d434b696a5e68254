//! Why a call to the owner was refused; nothing changed. Each names the field or the
//! cause, so the admin API maps it to a status in one place.

use std::net::IpAddr;

/// Why a reload was refused; the running config is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error("{0} changed: this needs a restart (the running config is kept)")]
    NeedsRestart(String),
    #[error("steerdns is stopping")]
    Stopping,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("unknown service {0}")]
    UnknownService(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0} is a configured target of this service")]
    Configured(IpAddr),
    #[error("the service already has max_registrations = {0} registrations")]
    TooMany(u32),
    #[error("no registration of {0} for this service")]
    NotRegistered(IpAddr),
    #[error("store unavailable: {0}")]
    Store(String),
    #[error("steerdns is stopping")]
    Stopping,
}

/// Why an admin state was not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetStateError {
    #[error("unknown service {0}")]
    UnknownService(String),
    #[error("store unavailable: {0}")]
    Store(String),
    #[error("steerdns is stopping")]
    Stopping,
}

/// Why no change of a service can be asked of the store now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refused {
    UnknownService(String),
    Store(String),
}

impl From<Refused> for RegisterError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::UnknownService(s) => RegisterError::UnknownService(s),
            Refused::Store(s) => RegisterError::Store(s),
        }
    }
}

impl From<Refused> for SetStateError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::UnknownService(s) => SetStateError::UnknownService(s),
            Refused::Store(s) => SetStateError::Store(s),
        }
    }
}
