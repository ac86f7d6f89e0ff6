//! Statements with `:name` parameters, rewritten once per text to positional form
//! (`?N` for SQLite, `$N` for PostgreSQL) and cached.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::{Backend, SqlError, Value};

#[derive(Debug, Clone)]
pub struct Stmt {
    pub(crate) sql: Cow<'static, str>,
    pub(crate) params: Vec<(&'static str, Value)>,
}

impl Stmt {
    pub fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Stmt {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    /// Binds `:name`. Binding a name twice keeps the last value.
    pub fn bind(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        let value = value.into();
        match self.params.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.params.push((name, value)),
        }
        self
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The positional SQL for `backend` and the values in position order.
    pub(crate) fn prepare(&self, backend: Backend) -> Result<(Arc<Rewritten>, Vec<&Value>), SqlError> {
        let rewritten = cached_rewrite(&self.sql, backend);
        let mut values = Vec::with_capacity(rewritten.names.len());
        for name in &rewritten.names {
            let value = self
                .params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .ok_or_else(|| SqlError::MissingParam(name.clone()))?;
            values.push(value);
        }
        if let Some((unused, _)) = self
            .params
            .iter()
            .find(|(n, _)| !rewritten.names.iter().any(|m| m == n))
        {
            return Err(SqlError::UnusedParam((*unused).to_string()));
        }
        Ok((rewritten, values))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Rewritten {
    pub sql: String,
    /// Parameter names in position order: `names[0]` is `?1` / `$1`.
    pub names: Vec<String>,
}

fn cached_rewrite(sql: &str, backend: Backend) -> Arc<Rewritten> {
    // One map per backend, looked up by `&str`: a hit (every statement after the first)
    // allocates nothing.
    type Cache = RwLock<HashMap<String, Arc<Rewritten>>>;
    static CACHES: OnceLock<[Cache; 2]> = OnceLock::new();
    let cache = &CACHES.get_or_init(Default::default)[match backend {
        Backend::Sqlite => 0,
        Backend::Postgres => 1,
    }];
    if let Some(hit) = cache.read().expect("rewrite cache lock poisoned").get(sql) {
        return hit.clone();
    }
    let rewritten = Arc::new(rewrite(sql, backend));
    cache
        .write()
        .expect("rewrite cache lock poisoned")
        .insert(sql.to_owned(), rewritten.clone());
    rewritten
}

/// Rewrites `:name` placeholders to positional ones. Quoted strings, quoted identifiers,
/// comments and `::` casts are left alone; a name used twice gets one position.
pub fn rewrite(sql: &str, backend: Backend) -> Rewritten {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' => {
                let end = find_closing_quote(bytes, i + 1, c);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                let end = sql[i..].find('\n').map_or(bytes.len(), |p| i + p);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = sql[i + 2..].find("*/").map_or(bytes.len(), |p| i + 2 + p + 2);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b':' if bytes.get(i + 1) == Some(&b':') => {
                out.push_str("::");
                i += 2;
            }
            b':' if bytes.get(i + 1).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                    end += 1;
                }
                let name = &sql[start..end];
                let position = match names.iter().position(|n| n == name) {
                    Some(p) => p + 1,
                    None => {
                        names.push(name.to_owned());
                        names.len()
                    }
                };
                out.push(match backend {
                    Backend::Sqlite => '?',
                    Backend::Postgres => '$',
                });
                out.push_str(&position.to_string());
                i = end;
            }
            _ => {
                // Copy one UTF-8 character.
                let len = utf8_len(c);
                out.push_str(&sql[i..i + len]);
                i += len;
            }
        }
    }
    Rewritten { sql: out, names }
}

fn find_closing_quote(bytes: &[u8], mut i: usize, quote: u8) -> usize {
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2; // doubled quote is an escaped quote
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rewrites_names_and_keeps_literals_comments_and_casts() {
        let r = rewrite(
            "SELECT :a, ':b', \"x:y\", :a::text, :c -- :d\n/* :e */ FROM t WHERE x = :c_2",
            Backend::Postgres,
        );
        assert_eq!(
            r.sql,
            "SELECT $1, ':b', \"x:y\", $1::text, $2 -- :d\n/* :e */ FROM t WHERE x = $3"
        );
        assert_eq!(r.names, vec!["a", "c", "c_2"]);
        let s = rewrite("UPDATE t SET a = :a WHERE b = 'it''s :not' AND c = :a", Backend::Sqlite);
        assert_eq!(s.sql, "UPDATE t SET a = ?1 WHERE b = 'it''s :not' AND c = ?1");
    }

    #[test]
    fn missing_and_unused_parameters_are_errors() {
        let missing = Stmt::new("SELECT :a").prepare(Backend::Sqlite).err();
        assert!(matches!(missing, Some(SqlError::MissingParam(n)) if n == "a"));
        let unused = Stmt::new("SELECT :a")
            .bind("a", 1)
            .bind("b", 2)
            .prepare(Backend::Sqlite)
            .err();
        assert!(matches!(unused, Some(SqlError::UnusedParam(n)) if n == "b"));
    }

    proptest! {
        /// Whatever the names, every placeholder becomes a position that maps back to its name.
        #[test]
        fn every_placeholder_maps_back_to_its_name(names in proptest::collection::vec("[a-z_][a-z0-9_]{0,8}", 1..8)) {
            let sql = names.iter().map(|n| format!(":{n}")).collect::<Vec<_>>().join(", ");
            let r = rewrite(&sql, Backend::Postgres);
            let parts: Vec<&str> = r.sql.split(", ").collect();
            prop_assert_eq!(parts.len(), names.len());
            for (part, name) in parts.iter().zip(&names) {
                let pos: usize = part.trim_start_matches('$').parse().unwrap();
                prop_assert_eq!(&r.names[pos - 1], name);
            }
        }

        /// Text without a colon passes through unchanged.
        #[test]
        fn text_without_placeholders_is_unchanged(sql in "[^:]{0,64}") {
            prop_assert_eq!(rewrite(&sql, Backend::Sqlite).sql, sql);
        }
    }
}
