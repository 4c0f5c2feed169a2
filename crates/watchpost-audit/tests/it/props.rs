//! Property tests: a sealed event's hash survives a JSON round trip whatever its payload, and any
//! single-field change breaks it.

use proptest::prelude::*;
use serde_json::Value;
use watchpost_audit::{Action, AuditEvent, ChainHead, NewEvent, compute_hash};

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
