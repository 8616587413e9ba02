//! Where SQLite and PostgreSQL differ. Statements are written once; the few places where the two
//! dialects differ (JSON arrays as parameters, `GREATEST`, `IS DISTINCT FROM`, row locks,
//! `SKIP LOCKED`, numbered placeholders in multi-row inserts) pick their text here.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The statement text for this dialect.
    pub(super) fn pick(self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }

    /// The ids in `$1`, a JSON array of integers, as a subquery.
    pub(super) fn ids(self) -> &'static str {
        self.pick(
            "SELECT value FROM json_each($1)",
            "SELECT value::bigint FROM jsonb_array_elements_text($1::jsonb) AS t(value)",
        )
    }

    /// The strings in `$1`, a JSON array of strings, as a subquery.
    pub(super) fn texts(self) -> &'static str {
        self.pick(
            "SELECT value FROM json_each($1)",
            "SELECT value FROM jsonb_array_elements_text($1::jsonb) AS t(value)",
        )
    }

    /// The larger of two values.
    pub(super) fn greatest(self) -> &'static str {
        self.pick("MAX", "GREATEST")
    }

    /// `a IS NOT b`, true when they differ, NULLs included.
    pub(super) fn is_not(self) -> &'static str {
        self.pick("IS NOT", "IS DISTINCT FROM")
    }
}

/// `(…), (…)` for `rows` rows of `columns` placeholders: numbered `$n` for PostgreSQL (sqlx's
/// query builder writes `?` for `Any`, which PostgreSQL refuses), anonymous `?` for SQLite, which
/// looks every numbered parameter up by name in a list, a cost that grows with the square of the
/// count and took a third of ingest throughput at 832 parameters per statement.
pub(super) fn values(dialect: Dialect, rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            match dialect {
                Dialect::Sqlite => out.push('?'),
                Dialect::Postgres => out.push_str(&format!("${}", row * columns + column + 1)),
            }
        }
        out.push(')');
    }
    out
}
