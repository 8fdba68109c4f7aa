//! What a sharer posts, checked against the types the seed's client model reads back.
//!
//! Receivers deserialize what a sharer posted into a strictly typed model
//! (`System.Text.Json`: a `long` refuses `1.5`, a `bool` refuses `"true"`). Whatever one
//! sharer posts, every receiver must be able to read, so the fields the seed names are
//! checked when they are posted (400 otherwise), and a fractional `timestamp` is stored as
//! the whole milliseconds the model's `long` holds. `null` passes: the seed's own model
//! writes it for what it does not know (`thumbnailData`). Other fields are kept as posted.

use super::ShareError;
use serde_json::{Map, Number, Value};

/// A sharer's epoch-millisecond `timestamp` as the model's `long`: an integer as it is, a
/// fraction rounded down; `None` when it does not fit 64 bits.
pub fn whole_ms(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.is_u64() {
        return None; // above i64::MAX
    }
    let ms = n.as_f64()?.floor();
    // i64::MIN is exactly -2^63 as a float, and i64::MAX rounds up to 2^63.
    (ms >= i64::MIN as f64 && ms < i64::MAX as f64).then_some(ms as i64)
}

/// A timestamp from a binary WebSocket frame (any f64) as whole milliseconds: rounded
/// down, saturating at the ends of the range, 0 when not a number.
pub fn frame_ms(ms: f64) -> i64 {
    // `as` saturates and maps NaN to 0.
    ms.floor() as i64
}

/// The type each field of the seed's metadata must have (or be `null`).
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Flag,
    Number,
    Millis,
}

const METADATA_FIELDS: [(&str, Kind); 8] = [
    ("title", Kind::Text),
    ("artist", Kind::Text),
    ("lyrics", Kind::Text),
    ("hasSyncedLyrics", Kind::Flag),
    ("elapsedSeconds", Kind::Number),
    ("totalSeconds", Kind::Number),
    ("thumbnailData", Kind::Text),
    ("timestamp", Kind::Millis),
];

/// Checks a metadata body: an object whose seed fields have the seed's types; its
/// `timestamp` becomes whole milliseconds.
pub fn check_metadata(body: Value) -> Result<Map<String, Value>, ShareError> {
    let Value::Object(mut object) = body else {
        return Err(ShareError::InvalidBody(
            "metadata must be a JSON object".into(),
        ));
    };
    for (name, kind) in METADATA_FIELDS {
        let Some(value) = object.get_mut(name) else {
            continue;
        };
        let fits = match (kind, &*value) {
            (_, Value::Null) => true,
            (Kind::Text, v) => v.is_string(),
            (Kind::Flag, v) => v.is_boolean(),
            (Kind::Number, v) => v.is_number(),
            (Kind::Millis, Value::Number(n)) => match whole_ms(n) {
                Some(ms) => {
                    *value = Value::from(ms);
                    true
                }
                None => false,
            },
            (Kind::Millis, _) => false,
        };
        if !fits {
            let wanted = match kind {
                Kind::Text => "a string or null",
                Kind::Flag => "true, false or null",
                Kind::Number => "a number or null",
                Kind::Millis => "integer epoch milliseconds (a 64-bit integer) or null",
            };
            return Err(ShareError::InvalidBody(format!("{name} must be {wanted}")));
        }
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_stay_and_fractions_round_down_to_whole_milliseconds() {
        let ms = |v: Value| whole_ms(v.as_number().unwrap());
        assert_eq!(ms(json!(1_234_567_890_123_i64)), Some(1_234_567_890_123));
        assert_eq!(ms(json!(1_795_987_760_689.057_4)), Some(1_795_987_760_689));
        assert_eq!(ms(json!(-1.5)), Some(-2));
        assert_eq!(ms(json!(i64::MAX)), Some(i64::MAX));
        assert_eq!(ms(json!(u64::MAX)), None);
        assert_eq!(ms(json!(1e300)), None);
        assert_eq!(ms(json!(-1e300)), None);
    }

    #[test]
    fn frame_timestamps_saturate_and_a_nan_is_zero() {
        assert_eq!(frame_ms(1_732_190_000_123.456), 1_732_190_000_123);
        assert_eq!(frame_ms(f64::NAN), 0);
        assert_eq!(frame_ms(f64::INFINITY), i64::MAX);
        assert_eq!(frame_ms(f64::NEG_INFINITY), i64::MIN);
    }

    #[test]
    fn the_seed_body_passes_with_its_timestamp_whole() {
        let mut body = json!({
            "title": "Song Title", "artist": "Artist Name", "lyrics": null,
            "hasSyncedLyrics": true, "elapsedSeconds": 45.2, "totalSeconds": 180,
            "thumbnailData": null, "timestamp": 1_234_567_890_123.75,
            "extra": {"kept": [1, 2.5]},
        });
        let checked = check_metadata(body.clone()).unwrap();
        body["timestamp"] = json!(1_234_567_890_123_i64);
        assert_eq!(Value::Object(checked), body);
        assert!(check_metadata(json!({})).is_ok(), "every field is optional");
    }

    #[test]
    fn a_seed_field_of_another_type_is_refused() {
        for bad in [
            json!({"title": 5}),
            json!({"artist": ["a"]}),
            json!({"lyrics": {}}),
            json!({"hasSyncedLyrics": "true"}),
            json!({"hasSyncedLyrics": 1}),
            json!({"elapsedSeconds": "45.2"}),
            json!({"totalSeconds": false}),
            json!({"thumbnailData": 0}),
            json!({"timestamp": "1234567890123"}),
            json!({"timestamp": 1e300}),
            json!({"timestamp": u64::MAX}),
            json!([1, 2]),
            json!("title"),
        ] {
            let refused = check_metadata(bad.clone()).unwrap_err();
            assert_eq!(refused.code(), "INVALID_REQUEST", "{bad}");
        }
    }
}
