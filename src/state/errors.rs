//! How the model's refusals become the API's errors (`api::RegisterError`,
//! `api::SetStateError`, `api::ReloadError`).

use crate::api::{RegisterError, SetStateError};

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
