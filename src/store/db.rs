//! One statement, two ways to run it. The write transactions' statements ([`super::Tx`], the
//! signals' intake, the deliveries' outcomes) are written once and run either through sqlx
//! (PostgreSQL) or in place on the SQLite connection the transaction holds ([`super::lite`]).
//! sqlx hands every statement to the thread that owns its SQLite connection and waits for the
//! answer: two thread wake-ups per statement, which on a two-core machine cost more than SQLite's
//! own work, and the pipeline's step runs about twenty. In place, the statements of a step cost
//! no hand-off.
//!
//! The builder copies the part of sqlx's interface the store uses (`query`, `query_scalar`,
//! `bind`, `execute`, `fetch_*`), and binds parameters as sqlx's SQLite driver does: `$n` and
//! `?n` by number, `?` in order, and from the first parameter without a value on, the rest left
//! NULL.

use std::marker::PhantomData;
use std::sync::Arc;

use rusqlite::types::{Value, ValueRef};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection};

use super::{Result, StoreError};

/// Where a statement runs: a sqlx connection (a pool's, or a transaction's), or SQLite's
/// connection held by an in-place transaction.
pub(super) enum Db<'c> {
    Sqlx(&'c mut AnyConnection),
    Lite(&'c mut rusqlite::Connection),
}

impl<'c> Db<'c> {
    /// A sqlx transaction's connection.
    pub(super) fn tx(tx: &'c mut sqlx::Transaction<'static, Any>) -> Db<'c> {
        Db::Sqlx(tx)
    }
}

/// A parameter's value. Nulls keep their type: PostgreSQL reads it.
#[derive(Debug, Clone)]
pub(super) enum Arg {
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
    Null(Kind),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Int,
    Real,
    Text,
    Bool,
}

/// A Rust type that binds as one [`Arg`], and the type of its null.
pub(super) trait Bind {
    const KIND: Kind;
    fn arg(self) -> Arg;
}

/// `Bind` for a type: the kind of its null, and its value from `self`.
macro_rules! bind {
    ($($t:ty => $kind:ident, |$v:ident| $arg:expr;)+) => {$(
        impl Bind for $t {
            const KIND: Kind = Kind::$kind;
            fn arg(self) -> Arg {
                let $v = self;
                $arg
            }
        }
    )+};
}

bind! {
    i64 => Int, |v| Arg::Int(v);
    &i64 => Int, |v| Arg::Int(*v);
    i32 => Int, |v| Arg::Int(i64::from(v));
    f64 => Real, |v| Arg::Real(v);
    bool => Bool, |v| Arg::Bool(v);
    String => Text, |v| Arg::Text(v);
    &String => Text, |v| Arg::Text(v.clone());
    &str => Text, |v| Arg::Text(v.to_owned());
}

impl<'a, T> Bind for &'a Option<T>
where
    &'a T: Bind,
{
    const KIND: Kind = <&'a T>::KIND;
    fn arg(self) -> Arg {
        self.as_ref().map_or(Arg::Null(Self::KIND), Bind::arg)
    }
}

impl<T: Bind> Bind for Option<T> {
    const KIND: Kind = T::KIND;
    fn arg(self) -> Arg {
        self.map_or(Arg::Null(T::KIND), Bind::arg)
    }
}

/// A statement and its parameters.
pub(super) struct Query {
    sql: Sql,
    args: Vec<Arg>,
}

pub(super) enum Sql {
    Static(&'static str),
    Owned(String),
}

impl Sql {
    fn as_str(&self) -> &str {
        match self {
            Sql::Static(s) => s,
            Sql::Owned(s) => s,
        }
    }
}

impl From<&'static str> for Sql {
    fn from(s: &'static str) -> Sql {
        Sql::Static(s)
    }
}

impl From<String> for Sql {
    fn from(s: String) -> Sql {
        Sql::Owned(s)
    }
}

/// A statement, as `sqlx::query`. The text is the store's own (never a user's); values go in
/// parameters.
pub(super) fn query(sql: impl Into<Sql>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// A statement whose rows are read by their first column, as `sqlx::query_scalar`.
pub(super) fn query_scalar<T>(sql: impl Into<Sql>) -> Scalar<T> {
    Scalar {
        query: query(sql),
        out: PhantomData,
    }
}

/// What an `execute` changed.
pub(super) struct Done {
    rows: u64,
}

impl Done {
    pub(super) fn rows_affected(&self) -> u64 {
        self.rows
    }
}

impl Query {
    pub(super) fn bind(mut self, value: impl Bind) -> Query {
        self.args.push(value.arg());
        self
    }

    pub(super) async fn execute(self, db: &mut Db<'_>) -> Result<Done> {
        match db {
            Db::Sqlx(conn) => {
                let done = self.sqlx().execute(&mut **conn).await?;
                Ok(Done {
                    rows: done.rows_affected(),
                })
            }
            Db::Lite(conn) => Ok(Done {
                rows: lite_run(conn, &self, Rows::None)?.1,
            }),
        }
    }

    pub(super) async fn fetch_all(self, db: &mut Db<'_>) -> Result<Vec<Row>> {
        match db {
            Db::Sqlx(conn) => Ok(self
                .sqlx()
                .fetch_all(&mut **conn)
                .await?
                .into_iter()
                .map(Row::Any)
                .collect()),
            Db::Lite(conn) => Ok(lite_run(conn, &self, Rows::All)?.0),
        }
    }

    pub(super) async fn fetch_optional(self, db: &mut Db<'_>) -> Result<Option<Row>> {
        match db {
            Db::Sqlx(conn) => Ok(self.sqlx().fetch_optional(&mut **conn).await?.map(Row::Any)),
            Db::Lite(conn) => Ok(lite_run(conn, &self, Rows::First)?.0.pop()),
        }
    }

    pub(super) async fn fetch_one(self, db: &mut Db<'_>) -> Result<Row> {
        self.fetch_optional(db)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    fn sqlx(&self) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql.as_str().to_owned()));
        for arg in &self.args {
            q = match arg.clone() {
                Arg::Int(v) => q.bind(v),
                Arg::Real(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Null(Kind::Int) => q.bind(None::<i64>),
                Arg::Null(Kind::Real) => q.bind(None::<f64>),
                Arg::Null(Kind::Text) => q.bind(None::<String>),
                Arg::Null(Kind::Bool) => q.bind(None::<bool>),
            };
        }
        q
    }
}

/// A [`query_scalar`].
pub(super) struct Scalar<T> {
    query: Query,
    out: PhantomData<fn() -> T>,
}

impl<T: for<'r> Get<'r>> Scalar<T> {
    pub(super) fn bind(mut self, value: impl Bind) -> Scalar<T> {
        self.query = self.query.bind(value);
        self
    }

    pub(super) async fn fetch_all(self, db: &mut Db<'_>) -> Result<Vec<T>> {
        self.query
            .fetch_all(db)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect()
    }

    pub(super) async fn fetch_optional(self, db: &mut Db<'_>) -> Result<Option<T>> {
        self.query
            .fetch_optional(db)
            .await?
            .map(|r| r.try_get(0))
            .transpose()
    }

    pub(super) async fn fetch_one(self, db: &mut Db<'_>) -> Result<T> {
        self.query.fetch_one(db).await?.try_get(0)
    }
}

/// Which rows of its answer a statement's caller reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rows {
    None,
    First,
    All,
}

/// Statement texts longer than this (the multi-row inserts of more than a few rows) are compiled
/// at each run instead of kept: there is one per row count, each holding thousands of
/// parameters, and kept they would push the short, frequent statements out of the cache.
const CACHED_TEXT: usize = 2048;

/// Runs the statement on SQLite's connection, here and now, to its end: the rows asked for, and
/// how many rows it changed.
fn lite_run(conn: &rusqlite::Connection, q: &Query, rows: Rows) -> Result<(Vec<Row>, u64)> {
    let sql = q.sql.as_str();
    let mut uncached;
    let mut cached;
    let stmt: &mut rusqlite::Statement<'_> = if sql.len() <= CACHED_TEXT {
        cached = conn.prepare_cached(sql)?;
        &mut cached
    } else {
        uncached = conn.prepare(sql)?;
        &mut uncached
    };
    let mut anonymous = 0;
    for i in 1..=stmt.parameter_count() {
        let n = match stmt.parameter_name(i) {
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| StoreError::Corrupt(format!("unsupported parameter {name}")))?,
            None => {
                anonymous += 1;
                anonymous
            }
        };
        let Some(arg) = q.args.get(n.wrapping_sub(1)) else {
            // As sqlx: SQLite leaves parameters without a value NULL.
            break;
        };
        match arg {
            Arg::Int(v) => stmt.raw_bind_parameter(i, v)?,
            Arg::Real(v) => stmt.raw_bind_parameter(i, v)?,
            Arg::Text(v) => stmt.raw_bind_parameter(i, v)?,
            Arg::Bool(v) => stmt.raw_bind_parameter(i, i64::from(*v))?,
            Arg::Null(_) => stmt.raw_bind_parameter(i, rusqlite::types::Null)?,
        }
    }
    let columns: Arc<[String]> = if rows != Rows::None {
        stmt.column_names().into_iter().map(str::to_owned).collect()
    } else {
        Arc::from([])
    };
    let width = stmt.column_count();
    let mut out = Vec::new();
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next()? {
        if rows == Rows::All || (rows == Rows::First && out.is_empty()) {
            let values = (0..width)
                .map(|i| row.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            out.push(Row::Lite(LiteRow {
                columns: Arc::clone(&columns),
                values,
            }));
        }
    }
    drop(cursor);
    Ok((out, conn.changes()))
}

/// A row read by either way.
pub(super) enum Row {
    Any(AnyRow),
    Lite(LiteRow),
}

/// A row read in place: its values, copied out of SQLite's statement.
pub(super) struct LiteRow {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

/// A column, by name or position (from 0), as sqlx's `ColumnIndex`.
pub(super) trait Column: sqlx::ColumnIndex<AnyRow> + Copy + std::fmt::Display {
    fn position(self, columns: &[String]) -> Option<usize>;
}

impl Column for &str {
    fn position(self, columns: &[String]) -> Option<usize> {
        columns.iter().position(|c| c == self)
    }
}

impl Column for usize {
    fn position(self, columns: &[String]) -> Option<usize> {
        (self < columns.len()).then_some(self)
    }
}

/// Reading columns, from a row of either way or straight from sqlx's: the store's row mappers
/// take any of them.
pub(super) trait Cols {
    fn try_get<'r, T: Get<'r>, I: Column>(&'r self, column: I) -> Result<T>;
}

impl Cols for AnyRow {
    fn try_get<'r, T: Get<'r>, I: Column>(&'r self, column: I) -> Result<T> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}

impl Cols for Row {
    fn try_get<'r, T: Get<'r>, I: Column>(&'r self, column: I) -> Result<T> {
        Row::try_get(self, column)
    }
}

impl Row {
    /// A column's value, as `sqlx::Row::try_get`.
    pub(super) fn try_get<'r, T: Get<'r>, I: Column>(&'r self, column: I) -> Result<T> {
        match self {
            Row::Any(row) => row.try_get(column),
            Row::Lite(row) => {
                let value = column
                    .position(&row.columns)
                    .and_then(|i| row.values.get(i))
                    .ok_or_else(|| StoreError::Corrupt(format!("no column {column}")))?;
                T::lite(value).map_err(|found| {
                    StoreError::Corrupt(format!(
                        "column {column}: expected {}, found {found}",
                        std::any::type_name::<T>()
                    ))
                })
            }
        }
    }
}

/// A Rust type a column reads into, either way. A mismatch names the SQLite type found.
pub(super) trait Get<'r>: sqlx::Decode<'r, Any> + sqlx::Type<Any> + Sized {
    fn lite(value: &'r Value) -> std::result::Result<Self, &'static str>;
}

fn kind(value: &Value) -> &'static str {
    match ValueRef::from(value) {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

impl Get<'_> for i64 {
    fn lite(value: &Value) -> std::result::Result<i64, &'static str> {
        match value {
            Value::Integer(v) => Ok(*v),
            other => Err(kind(other)),
        }
    }
}

impl Get<'_> for i32 {
    fn lite(value: &Value) -> std::result::Result<i32, &'static str> {
        match value {
            Value::Integer(v) => i32::try_from(*v).map_err(|_| "INTEGER out of range"),
            other => Err(kind(other)),
        }
    }
}

impl Get<'_> for bool {
    fn lite(value: &Value) -> std::result::Result<bool, &'static str> {
        match value {
            Value::Integer(v) => Ok(*v != 0),
            other => Err(kind(other)),
        }
    }
}

impl Get<'_> for f64 {
    fn lite(value: &Value) -> std::result::Result<f64, &'static str> {
        match value {
            Value::Real(v) => Ok(*v),
            #[allow(clippy::cast_precision_loss)]
            Value::Integer(v) => Ok(*v as f64),
            other => Err(kind(other)),
        }
    }
}

impl Get<'_> for String {
    fn lite(value: &Value) -> std::result::Result<String, &'static str> {
        match value {
            Value::Text(v) => Ok(v.clone()),
            other => Err(kind(other)),
        }
    }
}

impl<'r> Get<'r> for &'r str {
    fn lite(value: &'r Value) -> std::result::Result<&'r str, &'static str> {
        match value {
            Value::Text(v) => Ok(v),
            other => Err(kind(other)),
        }
    }
}

impl<'r, T: Get<'r>> Get<'r> for Option<T> {
    fn lite(value: &'r Value) -> std::result::Result<Option<T>, &'static str> {
        match value {
            Value::Null => Ok(None),
            other => T::lite(other).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Db, StoreError, query, query_scalar};

    fn conn() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().expect("an in-memory database");
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n BIGINT, at BIGINT)",
        )
        .expect("a table");
        conn
    }

    /// Runs a future to its end (every statement here runs in place, without waiting).
    fn now<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn parameters_bind_by_number_in_order_or_not_at_all_as_sqlx_binds_them() {
        let mut c = conn();
        let db = &mut Db::Lite(&mut c);
        // `$2` before `$1`, and `$1` twice.
        now(query("INSERT INTO t (name, n, at) VALUES ($2, $1, $1)")
            .bind(7_i64)
            .bind("seven")
            .execute(db))
        .expect("insert");
        // Anonymous parameters in order.
        now(query("INSERT INTO t (name, n, at) VALUES (?, ?, ?)")
            .bind("eight")
            .bind(8_i64)
            .bind(None::<i64>)
            .execute(db))
        .expect("insert");
        // A parameter without a value is NULL.
        now(query("INSERT INTO t (name, n, at) VALUES ($1, $2, $3)")
            .bind("nine")
            .execute(db))
        .expect("insert");
        let rows = now(query("SELECT name, n, at FROM t ORDER BY id").fetch_all(db)).expect("rows");
        let read: Vec<(String, Option<i64>, Option<i64>)> = rows
            .iter()
            .map(|r| {
                (
                    r.try_get("name").expect("name"),
                    r.try_get("n").expect("n"),
                    r.try_get(2).expect("at"),
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                ("seven".to_owned(), Some(7), Some(7)),
                ("eight".to_owned(), Some(8), None),
                ("nine".to_owned(), None, None),
            ]
        );
    }

    #[test]
    fn execute_counts_the_rows_changed_and_a_missing_row_is_an_error() {
        let mut c = conn();
        let db = &mut Db::Lite(&mut c);
        for n in 0..5_i64 {
            now(query("INSERT INTO t (n) VALUES ($1)").bind(n).execute(db)).expect("insert");
        }
        let done = now(query("UPDATE t SET name = 'x' WHERE n >= $1")
            .bind(2_i64)
            .execute(db))
        .expect("update");
        assert_eq!(done.rows_affected(), 3);
        let none = now(query_scalar::<i64>("SELECT n FROM t WHERE n > 10").fetch_optional(db));
        assert!(matches!(none, Ok(None)));
        let missing = now(query_scalar::<i64>("SELECT n FROM t WHERE n > 10").fetch_one(db));
        assert!(matches!(
            missing,
            Err(StoreError::Database(sqlx::Error::RowNotFound))
        ));
    }

    #[test]
    fn a_column_of_another_type_or_name_is_an_error_naming_it() {
        let mut c = conn();
        let db = &mut Db::Lite(&mut c);
        now(query("INSERT INTO t (name, n) VALUES ('a', 1)").execute(db)).expect("insert");
        let row = now(query("SELECT name, n FROM t").fetch_one(db)).expect("row");
        let wrong = row
            .try_get::<i64, _>("name")
            .expect_err("text is no integer");
        assert!(wrong.to_string().contains("found TEXT"), "{wrong}");
        let absent = row
            .try_get::<i64, _>("nothing")
            .expect_err("no such column");
        assert!(absent.to_string().contains("nothing"), "{absent}");
        let null = now(query("SELECT at FROM t").fetch_one(db)).expect("row");
        assert!(null.try_get::<i64, _>("at").is_err());
        assert_eq!(null.try_get::<Option<i64>, _>("at").expect("a null"), None);
    }

    proptest! {
        /// Any text, integer or null goes in and comes back as it was: control characters, NUL,
        /// any Unicode, empty and long values.
        #[test]
        fn any_value_comes_back_as_it_went_in(
            rows in prop::collection::vec(
                (prop::option::of(any::<String>()), any::<i64>(), prop::option::of(any::<i64>())),
                0..20,
            ),
            long in prop::option::of("\\PC{2000,4000}"),
        ) {
            let mut c = conn();
            let db = &mut Db::Lite(&mut c);
            let mut rows = rows;
            rows.push((long, 0, None));
            for (name, n, at) in &rows {
                now(query("INSERT INTO t (name, n, at) VALUES ($1, $2, $3)")
                    .bind(name.clone())
                    .bind(*n)
                    .bind(*at)
                    .execute(db))
                .expect("insert");
            }
            let read = now(query("SELECT name, n, at FROM t ORDER BY id").fetch_all(db))
                .expect("rows");
            let read: Vec<(Option<String>, i64, Option<i64>)> = read
                .iter()
                .map(|r| {
                    let name = r.try_get("name").expect("name");
                    (name, r.try_get("n").expect("n"), r.try_get("at").expect("at"))
                })
                .collect();
            prop_assert_eq!(read, rows);
        }
    }
}
