//! Property tests: a sealed event's hash survives a JSON round trip whatever its payload, any
//! single-field change breaks it, and the direct canonical writer agrees with the generic one.

use proptest::prelude::*;
use serde_json::Value;
use watchpost_audit::event::canonical_bytes;
use watchpost_audit::{Action, AuditEvent, ChainHead, NewEvent, Outcome, compute_hash};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn hash_survives_round_trip(payload in json_value(), resource in ".{0,20}") {
        let mut head = ChainHead::genesis("p");
        let mut e = NewEvent::new(Action::Custom("prop".into()))
            .resource("t", resource)
            .payload(payload)
            .into_event(chrono::Utc::now());
        head.seal(&mut e);
        let text = serde_json::to_string(&e).unwrap();
        let back: AuditEvent = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(compute_hash(&back), e.hash.clone());
        let mut changed = back;
        changed.resource_id = Some(format!("{}!", changed.resource_id.unwrap_or_default()));
        prop_assert_ne!(compute_hash(&changed), e.hash);
    }
}

proptest! {
    #[test]
    fn direct_canonical_form_matches_the_value_route(
        payload in json_value(),
        text in "\\PC{0,16}",
        status in proptest::option::of(any::<u16>()),
        seq in any::<i64>(),
        micros in -62_000_000_000_000_000i64..253_000_000_000_000_000i64,
    ) {
        let at = chrono::DateTime::from_timestamp_micros(micros).unwrap();
        let mut n = NewEvent::new(Action::Custom(text.clone()))
            .resource(text.clone(), text.clone())
            .payload(payload);
        n.occurred_at = Some(at);
        n.user_agent = Some(text.clone());
        n.outcome = Outcome { status, ..Outcome::failure() };
        let mut e = n.into_event(at);
        e.stream = text;
        e.seq = seq;
        let mut v = serde_json::to_value(&e).unwrap();
        let map = v.as_object_mut().unwrap();
        map.remove("hash");
        map.remove("prevHash");
        prop_assert_eq!(
            String::from_utf8(e.canonical_bytes()).unwrap(),
            String::from_utf8(canonical_bytes(&v)).unwrap()
        );
    }
}
