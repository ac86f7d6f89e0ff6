use std::sync::Arc;

use crate::{SqlError, Value};

/// One result row; columns are looked up by name.
#[derive(Debug, Clone)]
pub struct Row {
    pub(crate) columns: Arc<[String]>,
    pub(crate) values: Vec<Value>,
}

impl Row {
    pub fn new(columns: Arc<[String]>, values: Vec<Value>) -> Self {
        Row { columns, values }
    }

    /// Every column with its value, in the order the query named them.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.columns.iter().map(String::as_str).zip(&self.values)
    }

    pub fn value(&self, column: &str) -> Option<&Value> {
        self.columns.iter().position(|c| c == column).map(|i| &self.values[i])
    }

    /// Reads `column`; a decoding error names `table` and `column`.
    pub fn get_in<T: FromValue>(&self, table: &str, column: &str) -> Result<T, SqlError> {
        let decode_error = |reason: String| SqlError::Decode {
            table: table.to_owned(),
            column: column.to_owned(),
            reason,
        };
        let value = self
            .value(column)
            .ok_or_else(|| decode_error("no such column in the result".into()))?;
        T::from_value(value).map_err(decode_error)
    }

    /// Reads `column` of a result that is not one table's row (counts, aggregates).
    pub fn get<T: FromValue>(&self, column: &str) -> Result<T, SqlError> {
        self.get_in("(query)", column)
    }
}

pub trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self, SqlError>;
}

pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

fn mismatch(expected: &str, found: &Value) -> String {
    format!("expected {expected}, found {}", found.kind())
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::I64(i) => Ok(*i),
            other => Err(mismatch("integer", other)),
        }
    }
}
impl FromValue for i32 {
    fn from_value(v: &Value) -> Result<Self, String> {
        let i = i64::from_value(v)?;
        i32::try_from(i).map_err(|_| format!("integer {i} does not fit in 32 bits"))
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Bool(b) => Ok(*b),
            // SQLite stores booleans as 0/1.
            Value::I64(0) => Ok(false),
            Value::I64(1) => Ok(true),
            other => Err(mismatch("boolean", other)),
        }
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::F64(f) => Ok(*f),
            Value::I64(i) => Ok(*i as f64),
            other => Err(mismatch("float", other)),
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(mismatch("text", other)),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Bytes(b) => Ok(b.clone()),
            other => Err(mismatch("bytes", other)),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}
