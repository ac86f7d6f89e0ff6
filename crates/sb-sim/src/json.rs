//! Ordered JSON with Meta's wire escaping.
//!
//! Meta signs the webhook body exactly as sent, and sends every non-ASCII
//! character as a lowercase `\uXXXX` escape (UTF-16 surrogate pairs for
//! characters outside the BMP) — channels.md §1.2. `serde_json::Value` sorts
//! keys and writes raw UTF-8, so the simulators build payloads with this small
//! ordered type instead and serialise them with [`Json::to_wire`].

use serde_json::Value;

/// A JSON value whose objects keep insertion order.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// Builds a [`Json::Obj`] keeping the written key order: `jobj! { "a": 1, "b": "x" }`.
#[macro_export]
macro_rules! jobj {
    ($($k:literal : $v:expr),* $(,)?) => {
        $crate::json::Json::Obj(vec![$(($k.to_string(), $crate::json::Json::from($v))),*])
    };
}

impl Json {
    /// An empty object.
    pub fn obj() -> Self {
        Json::Obj(Vec::new())
    }

    /// Appends (or replaces) `key` and returns the object; no-op on non-objects.
    pub fn with(mut self, key: &str, v: impl Into<Json>) -> Self {
        self.set(key, v);
        self
    }

    /// Like [`with`](Self::with) but only when `v` is `Some`.
    pub fn with_opt<T: Into<Json>>(mut self, key: &str, v: Option<T>) -> Self {
        if let Some(v) = v {
            self.set(key, v);
        }
        self
    }

    /// Sets `key`, replacing an existing entry in place or appending a new one.
    pub fn set(&mut self, key: &str, v: impl Into<Json>) {
        if let Json::Obj(fields) = self {
            let v = v.into();
            if let Some(slot) = fields.iter_mut().find(|(k, _)| k == key) {
                slot.1 = v;
            } else {
                fields.push((key.to_string(), v));
            }
        }
    }

    /// Field of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Serialises compactly with every non-ASCII character as a lowercase `\uXXXX` escape.
    pub fn to_wire(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write(&mut out, true);
        out
    }

    /// Serialises compactly with raw UTF-8, as the Bot API and Twilio's REST API answer.
    pub fn to_utf8_wire(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write(&mut out, false);
        out
    }

    fn write(&self, out: &mut String, ascii: bool) {
        let string = |s: &str, out: &mut String| {
            if ascii {
                write_str(s, out)
            } else {
                out.push_str(&serde_json::to_string(s).unwrap_or_default())
            }
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => out.push_str(&i.to_string()),
            Json::Float(f) => {
                if f.is_finite() {
                    out.push_str(
                        &serde_json::Number::from_f64(*f)
                            .map(|n| n.to_string())
                            .unwrap_or_default(),
                    );
                } else {
                    out.push_str("null");
                }
            }
            Json::Str(s) => string(s, out),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out, ascii);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(k, out);
                    out.push(':');
                    v.write(out, ascii);
                }
                out.push('}');
            }
        }
    }

    /// Converts to a `serde_json::Value` (key order is then up to serde_json).
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::from(*i),
            Json::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Json::Str(s) => Value::String(s.clone()),
            Json::Arr(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Obj(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), v.to_value())).collect()),
        }
    }
}

/// Writes `s` as a JSON string literal, ASCII only.
pub fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl From<&Value> for Json {
    fn from(v: &Value) -> Self {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Json::Int(i),
                None => Json::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => Json::Str(s.clone()),
            Value::Array(a) => Json::Arr(a.iter().map(Json::from).collect()),
            Value::Object(o) => Json::Obj(o.iter().map(|(k, v)| (k.clone(), Json::from(v))).collect()),
        }
    }
}

impl From<Value> for Json {
    fn from(v: Value) -> Self {
        Json::from(&v)
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Self {
        Json::Str(s.to_string())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Self {
        Json::Str(s)
    }
}

impl From<&String> for Json {
    fn from(s: &String) -> Self {
        Json::Str(s.clone())
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Self {
        Json::Bool(b)
    }
}

impl From<i64> for Json {
    fn from(i: i64) -> Self {
        Json::Int(i)
    }
}

impl From<i32> for Json {
    fn from(i: i32) -> Self {
        Json::Int(i64::from(i))
    }
}

impl From<u64> for Json {
    fn from(i: u64) -> Self {
        Json::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Json {
    fn from(i: usize) -> Self {
        Json::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Json {
    fn from(f: f64) -> Self {
        Json::Float(f)
    }
}

impl From<Vec<Json>> for Json {
    fn from(items: Vec<Json>) -> Self {
        Json::Arr(items)
    }
}

impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(v: Option<T>) -> Self {
        v.map_or(Json::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_non_ascii_lowercase_and_surrogates() {
        let j = jobj! { "name": "Ana López", "e": "ok \u{1F44D}", "c": "a\"b\\c\n\u{1}", "n": 3, "f": 40.41678 };
        assert_eq!(
            j.to_wire(),
            r#"{"name":"Ana L\u00f3pez","e":"ok \ud83d\udc4d","c":"a\"b\\c\n\u0001","n":3,"f":40.41678}"#
        );
        assert!(j.to_wire().is_ascii());
        let back: Value = serde_json::from_str(&j.to_wire()).unwrap();
        assert_eq!(back["name"], "Ana López");
        assert_eq!(back["e"], "ok \u{1F44D}");
    }

    #[test]
    fn keeps_key_order_and_replaces_in_place() {
        let j = Json::obj()
            .with("z", 1)
            .with("a", 2)
            .with("z", 3)
            .with_opt("none", None::<&str>);
        assert_eq!(j.to_wire(), r#"{"z":3,"a":2}"#);
    }
}
