//! Machine events (QMP's asynchronous messages: `STOP`, `RESUME`, `RESET`, `SHUTDOWN`,
//! `POWERDOWN`, ...), fanned out to every connected client that asked for them.

use serde_json::Value;
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

/// One event, as QMP frames it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub name: &'static str,
    pub data: Value,
    /// Host wall-clock time of the event.
    pub seconds: u64,
    pub microseconds: u32,
}

impl Event {
    pub fn new(name: &'static str, data: Value) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Event { name, data, seconds: now.as_secs(), microseconds: now.subsec_micros() }
    }

    /// `{"event": NAME, "data": {...}, "timestamp": {"seconds": S, "microseconds": US}}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "event": self.name,
            "data": self.data,
            "timestamp": {"seconds": self.seconds, "microseconds": self.microseconds},
        })
    }
}

/// Whoever wants events (a QMP session).
pub trait EventSink: Send + Sync {
    fn event(&self, event: &Event);
}

/// The subscribers; sinks that went away are dropped as events pass.
#[derive(Clone, Default)]
pub struct EventHub {
    sinks: Arc<Mutex<Vec<Weak<dyn EventSink>>>>,
}

impl EventHub {
    pub fn subscribe(&self, sink: Weak<dyn EventSink>) {
        super::lock(&self.sinks).push(sink);
    }

    pub fn emit(&self, name: &'static str, data: Value) {
        let event = Event::new(name, data);
        let live: Vec<Arc<dyn EventSink>> = {
            let mut sinks = super::lock(&self.sinks);
            sinks.retain(|s| s.strong_count() > 0);
            sinks.iter().filter_map(Weak::upgrade).collect()
        };
        for s in live {
            s.event(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Mutex<Vec<&'static str>>);
    impl EventSink for Recorder {
        fn event(&self, e: &Event) {
            self.0.lock().unwrap().push(e.name);
        }
    }

    #[test]
    fn events_reach_live_subscribers_only() {
        let hub = EventHub::default();
        let a = Arc::new(Recorder(Mutex::default()));
        let gone = Arc::new(Recorder(Mutex::default()));
        let weak_a: Weak<dyn EventSink> = Arc::downgrade(&a) as Weak<dyn EventSink>;
        let weak_gone: Weak<dyn EventSink> = Arc::downgrade(&gone) as Weak<dyn EventSink>;
        hub.subscribe(weak_a);
        hub.subscribe(weak_gone);
        drop(gone);
        hub.emit("STOP", serde_json::json!({}));
        assert_eq!(*a.0.lock().unwrap(), ["STOP"]);
        assert_eq!(super::super::lock(&hub.sinks).len(), 1);
        let json = Event::new("RESET", serde_json::json!({"guest": true})).to_json();
        assert_eq!(json["event"], "RESET");
        assert!(json["timestamp"]["seconds"].as_u64().unwrap() > 1_600_000_000);
    }
}
