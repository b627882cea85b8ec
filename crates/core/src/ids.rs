//! Identifiers.
//!
//! Ids are UUIDv7 (time-ordered, so indexes stay compact) built from the injected clock and
//! RNG. They are public handles, never credentials: anything that must not be guessed is a
//! [`crate::secret::Token`] (R91).

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::rng::{SecureRng, random_bytes};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A new id for something created at `now`.
            pub fn generate(now: Timestamp, rng: &dyn SecureRng) -> Self {
                let ms = u64::try_from(now.as_millis()).unwrap_or(0);
                Self(uuid::Builder::from_unix_timestamp_millis(ms, &random_bytes::<10>(rng)).into_uuid())
            }

            /// Parses the hyphenated text form.
            pub fn parse(s: &str) -> Option<Self> {
                if s.len() != 36 {
                    return None;
                }
                uuid::Uuid::try_parse(s).ok().map(Self)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

id_type!(
    /// An account.
    UserId
);
id_type!(
    /// A login session (one per device login); also names its refresh-token family.
    SessionId
);
id_type!(
    /// A device, as remembered by its device cookie or `Gatehouse-Device` header.
    DeviceId
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    #[test]
    fn ids_are_time_ordered_and_parse_back() {
        let rng = SeededRng::new(1);
        let a = UserId::generate(Timestamp::from_millis(1_000), &rng);
        let b = UserId::generate(Timestamp::from_millis(2_000), &rng);
        assert!(a < b);
        assert_eq!(UserId::parse(&a.to_string()), Some(a));
        assert_eq!(UserId::parse("not-a-uuid"), None);
        assert_eq!(UserId::parse(&a.as_uuid().simple().to_string()), None);
    }
}
