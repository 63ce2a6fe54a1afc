//! Machine state that snapshots and live migration carry: every device, interrupt controller,
//! timer and vCPU implements [`Persist`], handing out a plain-data `State` (serde) and taking
//! one back.
//!
//! A saved machine is a list of [`Section`]s, one per stateful object. Each names its kind
//! (`section`), which instance it is (`id`, e.g. `com1` or `00:03.0`), a version, and the state
//! as self-describing JSON. Loading never guesses: a section whose name, version or fields do
//! not match what this build saves is refused with an error naming the section and the field
//! (state structs use `#[serde(deny_unknown_fields)]`, so an extra field is an error just as a
//! missing one is). Values a device could not have produced (a FIFO longer than its depth, an
//! index past a table) are refused by `restore` with [`RestoreError::Invalid`], so a corrupted
//! file can never make the emulator misbehave later.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Something whose state snapshots and migration carry.
pub trait Persist {
    /// The section's name: one per kind of object (`"pic"`, `"uart"`, `"cpu"`).
    const SECTION: &'static str;
    /// Bumped whenever `State` changes meaning in a way its field names do not show.
    const VERSION: u32;
    /// Plain data: what the object needs to carry on exactly where it stopped.
    type State: Serialize + DeserializeOwned;

    /// The current state. The object keeps running unchanged.
    fn save(&self) -> Self::State;

    /// Takes `state` over (validating it first: on `Err` the object is unchanged), and
    /// re-drives whatever the object signals to the outside (interrupt lines) to match it.
    fn restore(&mut self, state: Self::State) -> Result<(), RestoreError>;
}

/// Why a device refused a state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    /// `field` holds a value this device could not have saved.
    #[error("field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl RestoreError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        RestoreError::Invalid { field, reason: reason.into() }
    }
}

/// Checks that `value` is at most `max`, naming `field` otherwise.
pub fn check_max<T: PartialOrd + std::fmt::Display>(field: &'static str, value: T, max: T) -> Result<(), RestoreError> {
    if value > max {
        return Err(RestoreError::invalid(field, format!("{value} is larger than {max}")));
    }
    Ok(())
}

/// One object's saved state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// [`Persist::SECTION`] of the object that saved it.
    pub section: String,
    /// Which one of its kind (`"com1"`, `"cpu1"`, a PCI address).
    pub id: String,
    /// [`Persist::VERSION`] of the build that saved it.
    pub version: u32,
    pub state: serde_json::Value,
}

/// Why a section could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("section {expected} ({id}): found a '{found}' section instead")]
    WrongSection { expected: &'static str, found: String, id: String },
    #[error("section {section} ({id}): saved as version {found}, this ferrite loads version {expected}")]
    Version { section: &'static str, id: String, found: u32, expected: u32 },
    /// A field is missing, extra or of the wrong type (serde names it).
    #[error("section {section} ({id}): {source}")]
    Fields {
        section: &'static str,
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("section {section} ({id}): {source}")]
    Refused {
        section: &'static str,
        id: String,
        #[source]
        source: RestoreError,
    },
}

/// Saves `object` as the section `id`.
pub fn save<P: Persist>(object: &P, id: &str) -> Section {
    let state = serde_json::to_value(object.save()).expect("device state is plain data that JSON represents");
    Section { section: P::SECTION.into(), id: id.into(), version: P::VERSION, state }
}

/// Loads `section` into `object`, checking its kind, version and fields first.
pub fn load<P: Persist>(object: &mut P, section: &Section) -> Result<(), LoadError> {
    let id = section.id.clone();
    if section.section != P::SECTION {
        return Err(LoadError::WrongSection { expected: P::SECTION, found: section.section.clone(), id });
    }
    if section.version != P::VERSION {
        return Err(LoadError::Version { section: P::SECTION, id, found: section.version, expected: P::VERSION });
    }
    let state = P::State::deserialize(&section.state).map_err(|source| LoadError::Fields { section: P::SECTION, id: id.clone(), source })?;
    object.restore(state).map_err(|source| LoadError::Refused { section: P::SECTION, id, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Counter {
        count: u32,
        limit: u32,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CounterState {
        count: u32,
        limit: u32,
    }

    impl Persist for Counter {
        const SECTION: &'static str = "counter";
        const VERSION: u32 = 1;
        type State = CounterState;
        fn save(&self) -> CounterState {
            CounterState { count: self.count, limit: self.limit }
        }
        fn restore(&mut self, s: CounterState) -> Result<(), RestoreError> {
            check_max("count", s.count, s.limit)?;
            (self.count, self.limit) = (s.count, s.limit);
            Ok(())
        }
    }

    #[test]
    fn a_section_round_trips_and_mismatches_name_the_section_and_field() {
        let saved = save(&Counter { count: 3, limit: 9 }, "c0");
        let mut c = Counter::default();
        load(&mut c, &saved).unwrap();
        assert_eq!((c.count, c.limit), (3, 9));

        let mut extra = saved.clone();
        extra.state["speed"] = 1.into();
        let e = load(&mut c, &extra).unwrap_err().to_string();
        assert!(e.contains("counter (c0)") && e.contains("unknown field `speed`"), "{e}");

        let mut missing = saved.clone();
        missing.state.as_object_mut().unwrap().remove("limit");
        let e = load(&mut c, &missing).unwrap_err().to_string();
        assert!(e.contains("missing field `limit`"), "{e}");

        let mut newer = saved.clone();
        newer.version = 2;
        assert!(matches!(load(&mut c, &newer), Err(LoadError::Version { found: 2, expected: 1, .. })));

        let mut bad = saved.clone();
        bad.state["count"] = 10.into();
        let e = load(&mut c, &bad).unwrap_err().to_string();
        assert!(e.contains("field `count`: 10 is larger than 9"), "{e}");
        assert_eq!(c.count, 3, "a refused state leaves the object unchanged");

        let mut other = saved;
        other.section = "pic".into();
        assert!(matches!(load(&mut c, &other), Err(LoadError::WrongSection { .. })));
    }
}
