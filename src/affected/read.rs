//! Uploads read as they arrive, a chunk at a time, holding only the row being read: CSV (RFC
//! 4180, a header line naming the columns, `,` or — as spreadsheets set for Italian write it —
//! `;`, a UTF-8 byte order mark allowed) and a JSON array of objects. A row comes out with the
//! line it starts on; what makes the upload unreadable ([`Malformed`]) names its line and never
//! repeats what the line holds.

use crate::domain::affected::{COLUMNS, RawRow};

/// The longest row: a row longer than this is an unclosed quote, not an appointment.
pub const MAX_ROW_BYTES: usize = 16 * 1024;

/// Why an upload cannot be read: its line and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Malformed {
    pub line: u64,
    pub reason: String,
}

fn malformed(line: u64, reason: impl Into<String>) -> Malformed {
    Malformed {
        line,
        reason: reason.into(),
    }
}

/// One row read: the line it starts on and its fields. `None` for an empty row (a blank line,
/// or only separators), reported as such.
pub type ReadRow = (u64, Option<RawRow>);

/// A reader fed the body's chunks in order.
pub trait Reader: Send {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<ReadRow>) -> Result<(), Malformed>;
    /// The body ended.
    fn finish(&mut self, out: &mut Vec<ReadRow>) -> Result<(), Malformed>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Csv {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: doubled, or the field's end.
    QuoteInQuoted,
}

/// CSV, RFC 4180.
pub struct CsvReader {
    state: Csv,
    /// The first line, until the delimiter is known.
    head: Option<Vec<u8>>,
    delimiter: u8,
    columns: Option<Vec<usize>>,
    field: Vec<u8>,
    record: Vec<Vec<u8>>,
    record_bytes: usize,
    line: u64,
    record_line: u64,
    started: bool,
}

impl Default for CsvReader {
    fn default() -> Self {
        CsvReader {
            state: Csv::FieldStart,
            head: Some(Vec::new()),
            delimiter: b',',
            columns: None,
            field: Vec::new(),
            record: Vec::new(),
            record_bytes: 0,
            line: 1,
            record_line: 1,
            started: false,
        }
    }
}

impl CsvReader {
    fn end_field(&mut self) {
        self.record.push(std::mem::take(&mut self.field));
    }

    fn end_record(&mut self, out: &mut Vec<ReadRow>) -> Result<(), Malformed> {
        let record = std::mem::take(&mut self.record);
        let line = self.record_line;
        self.record_bytes = 0;
        self.started = false;
        let mut cells = Vec::with_capacity(record.len());
        for cell in record {
            cells.push(String::from_utf8(cell).map_err(|_| malformed(line, "is not UTF-8"))?);
        }
        match &self.columns {
            None => {
                let mut columns = Vec::with_capacity(cells.len());
                for (i, name) in cells.iter().enumerate() {
                    let name = name.trim().to_ascii_lowercase();
                    let Some(at) = COLUMNS.iter().position(|c| *c == name) else {
                        return Err(malformed(
                            line,
                            format!(
                                "the header's column {} is not one of {}: the first line names the columns",
                                i + 1,
                                COLUMNS.join(", ")
                            ),
                        ));
                    };
                    if columns.contains(&at) {
                        return Err(malformed(
                            line,
                            format!("the header names {} twice", COLUMNS[at]),
                        ));
                    }
                    columns.push(at);
                }
                self.columns = Some(columns);
            }
            Some(columns) => {
                if cells.iter().all(|c| c.trim().is_empty()) {
                    out.push((line, None));
                    return Ok(());
                }
                if cells.len() != columns.len() {
                    return Err(malformed(
                        line,
                        format!(
                            "has {} fields, the header {}: a field holding the separator is quoted",
                            cells.len(),
                            columns.len()
                        ),
                    ));
                }
                let mut row = RawRow::default();
                for (cell, at) in cells.into_iter().zip(columns) {
                    row.set(COLUMNS[*at], cell);
                }
                out.push((line, Some(row)));
            }
        }
        Ok(())
    }

    fn byte(&mut self, b: u8, out: &mut Vec<ReadRow>) -> Result<(), Malformed> {
        if !self.started {
            self.started = true;
            self.record_line = self.line;
        }
        self.record_bytes += 1;
        if self.record_bytes > MAX_ROW_BYTES {
            return Err(malformed(
                self.record_line,
                format!("a row longer than {MAX_ROW_BYTES} bytes (a quote never closed?)"),
            ));
        }
        if b == b'\n' {
            self.line += 1;
        }
        let d = self.delimiter;
        match (self.state, b) {
            (Csv::FieldStart, b'"') => self.state = Csv::Quoted,
            (Csv::FieldStart | Csv::Unquoted | Csv::QuoteInQuoted, _) if b == d => {
                self.end_field();
                self.state = Csv::FieldStart;
            }
            (Csv::FieldStart | Csv::Unquoted | Csv::QuoteInQuoted, b'\n') => {
                if self.state == Csv::Unquoted && self.field.last() == Some(&b'\r') {
                    self.field.pop();
                }
                self.end_field();
                self.state = Csv::FieldStart;
                self.end_record(out)?;
            }
            (Csv::FieldStart | Csv::Unquoted, _) => {
                if b == b'"' {
                    return Err(malformed(
                        self.line,
                        "a quote inside an unquoted field: quote the whole field and double the quotes in it",
                    ));
                }
                self.field.push(b);
                self.state = Csv::Unquoted;
            }
            (Csv::Quoted, b'"') => self.state = Csv::QuoteInQuoted,
            (Csv::Quoted, _) => self.field.push(b),
            (Csv::QuoteInQuoted, b'"') => {
                self.field.push(b'"');
                self.state = Csv::Quoted;
            }
            // CRLF after a closing quote.
            (Csv::QuoteInQuoted, b'\r') => {}
            (Csv::QuoteInQuoted, _) => {
                return Err(malformed(
                    self.line,
                    "text after a closing quote: a quote inside a quoted field is doubled",
                ));
            }
        }
        Ok(())
    }
}

impl Reader for CsvReader {
    fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<ReadRow>) -> Result<(), Malformed> {
        if let Some(head) = &mut self.head {
            // The first line decides the separator: `;` when it has one and no `,`.
            match chunk.iter().position(|b| *b == b'\n') {
                None => {
                    head.extend_from_slice(chunk);
                    if head.len() > MAX_ROW_BYTES {
                        return Err(malformed(
                            1,
                            "no header line: the first line names the columns",
                        ));
                    }
                    return Ok(());
                }
                Some(at) => {
                    head.extend_from_slice(&chunk[..=at]);
                    chunk = &chunk[at + 1..];
                }
            }
            self.start_head(out)?;
        }
        for &b in chunk {
            self.byte(b, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<ReadRow>) -> Result<(), Malformed> {
        if self.head.is_some() {
            self.start_head(out)?;
        }
        match self.state {
            Csv::Quoted => {
                return Err(malformed(
                    self.record_line,
                    "a quoted field is never closed",
                ));
            }
            _ if self.started => {
                self.byte(b'\n', out)?;
            }
            _ => {}
        }
        if self.columns.is_none() {
            return Err(malformed(
                1,
                "no header line: the first line names the columns",
            ));
        }
        Ok(())
    }
}

impl CsvReader {
    fn start_head(&mut self, out: &mut Vec<ReadRow>) -> Result<(), Malformed> {
        let mut head = self.head.take().unwrap_or_default();
        if head.starts_with(b"\xEF\xBB\xBF") {
            head.drain(..3);
        }
        if head.contains(&b';') && !head.contains(&b',') {
            self.delimiter = b';';
        }
        for b in head {
            self.byte(b, out)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Json {
    /// Before the array's `[`.
    Before,
    /// Before a row or `]`.
    Row { first: bool },
    /// Inside a row.
    InRow,
    /// After a row: `,` or `]`.
    After,
    /// After the array's `]`.
    Done,
}

/// A JSON array of objects whose members are the columns, each a string or null.
pub struct JsonReader {
    state: Json,
    row: Vec<u8>,
    depth: u32,
    in_string: bool,
    escaped: bool,
    line: u64,
    row_line: u64,
    bom: usize,
}

impl Default for JsonReader {
    fn default() -> Self {
        JsonReader {
            state: Json::Before,
            row: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            line: 1,
            row_line: 1,
            bom: 0,
        }
    }
}

impl JsonReader {
    fn row_done(&mut self, out: &mut Vec<ReadRow>) -> Result<(), Malformed> {
        let line = self.row_line;
        let bytes = std::mem::take(&mut self.row);
        // Read as a map first: an unknown member or a value of the wrong type is named by its
        // member, never shown.
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
            .map_err(|e| {
                malformed(
                    line + e.line().saturating_sub(1) as u64,
                    format!("not a JSON object ({:?} error)", e.classify()),
                )
            })?;
        let mut row = RawRow::default();
        for (name, value) in map {
            let Some(column) = COLUMNS.iter().find(|c| **c == name) else {
                return Err(malformed(
                    line,
                    format!(
                        "unknown member `{}`: a row has {}",
                        name.chars().take(40).collect::<String>().escape_debug(),
                        COLUMNS.join(", ")
                    ),
                ));
            };
            match value {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => row.set(column, s),
                _ => {
                    return Err(malformed(
                        line,
                        format!("{column}: a string or null, not another JSON value"),
                    ));
                }
            }
        }
        let empty = [
            &row.fiscal_code,
            &row.mobile,
            &row.email,
            &row.language,
            &row.detail,
        ]
        .iter()
        .all(|f| f.as_deref().is_none_or(|v| v.trim().is_empty()));
        out.push((line, (!empty).then_some(row)));
        Ok(())
    }
}

impl Reader for JsonReader {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<ReadRow>) -> Result<(), Malformed> {
        for &b in chunk {
            // A byte order mark before the array.
            if self.state == Json::Before && self.line == 1 && self.bom < 3 {
                if b == b"\xEF\xBB\xBF"[self.bom] {
                    self.bom += 1;
                    continue;
                }
                self.bom = 3;
            }
            if b == b'\n' {
                self.line += 1;
            }
            let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
            match self.state {
                Json::Before if space => {}
                Json::Before if b == b'[' => self.state = Json::Row { first: true },
                Json::Before => {
                    return Err(malformed(self.line, "expected a JSON array of rows, `[`"));
                }
                Json::Row { .. } if space => {}
                Json::Row { first: true } if b == b']' => self.state = Json::Done,
                Json::Row { .. } if b == b'{' => {
                    self.state = Json::InRow;
                    self.row_line = self.line;
                    self.row.push(b);
                    self.depth = 1;
                }
                Json::Row { .. } => {
                    return Err(malformed(self.line, "each row is a JSON object, `{…}`"));
                }
                Json::InRow => {
                    self.row.push(b);
                    if self.row.len() > MAX_ROW_BYTES {
                        return Err(malformed(
                            self.row_line,
                            format!("a row longer than {MAX_ROW_BYTES} bytes"),
                        ));
                    }
                    if self.in_string {
                        match (self.escaped, b) {
                            (true, _) => self.escaped = false,
                            (false, b'\\') => self.escaped = true,
                            (false, b'"') => self.in_string = false,
                            _ => {}
                        }
                    } else {
                        match b {
                            b'"' => self.in_string = true,
                            b'{' | b'[' => self.depth += 1,
                            b'}' | b']' => {
                                self.depth = self.depth.saturating_sub(1);
                                if self.depth == 0 {
                                    self.state = Json::After;
                                    self.row_done(out)?;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                Json::After if space => {}
                Json::After if b == b',' => self.state = Json::Row { first: false },
                Json::After if b == b']' => self.state = Json::Done,
                Json::After => {
                    return Err(malformed(self.line, "expected `,` or `]` after a row"));
                }
                Json::Done if space => {}
                Json::Done => {
                    return Err(malformed(self.line, "text after the array's closing `]`"));
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<ReadRow>) -> Result<(), Malformed> {
        match self.state {
            Json::Done => Ok(()),
            Json::InRow => Err(malformed(self.row_line, "the body ends inside a row")),
            _ => Err(malformed(self.line, "the body ends before the array's `]`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(
        reader: &mut dyn Reader,
        body: &[u8],
        chunk: usize,
    ) -> Result<Vec<ReadRow>, Malformed> {
        let mut out = Vec::new();
        for part in body.chunks(chunk.max(1)) {
            reader.feed(part, &mut out)?;
        }
        reader.finish(&mut out)?;
        Ok(out)
    }

    fn csv(body: &str, chunk: usize) -> Result<Vec<ReadRow>, Malformed> {
        read_all(&mut CsvReader::default(), body.as_bytes(), chunk)
    }

    fn json(body: &str, chunk: usize) -> Result<Vec<ReadRow>, Malformed> {
        read_all(&mut JsonReader::default(), body.as_bytes(), chunk)
    }

    #[test]
    fn csv_rows_come_with_their_lines_whatever_the_chunks() {
        let body = "\u{feff}fiscal_code,mobile,email,detail\r\n\
                    RSSMRA85T10A562S,3471234567,,\"ore 11:30, Foligno\"\r\n\
                    \r\n\
                    ,,m.rossi@example.org,\"due\nrighe \"\"x\"\"\"\n\
                    ,,,\n\
                    ,3470000000,,ultima";
        for chunk in [1, 2, 3, 7, 1000] {
            let rows = csv(body, chunk).unwrap();
            assert_eq!(rows.len(), 5, "chunk {chunk}");
            let (line, row) = &rows[0];
            let row = row.as_ref().unwrap();
            assert_eq!(*line, 2);
            assert_eq!(row.detail.as_deref(), Some("ore 11:30, Foligno"));
            assert_eq!(row.mobile.as_deref(), Some("3471234567"));
            assert_eq!(rows[1], (3, None));
            assert_eq!(rows[2].0, 4);
            assert_eq!(
                rows[2].1.as_ref().unwrap().detail.as_deref(),
                Some("due\nrighe \"x\"")
            );
            assert_eq!(rows[3], (6, None));
            assert_eq!(rows[4].0, 7);
            assert_eq!(
                rows[4].1.as_ref().unwrap().detail.as_deref(),
                Some("ultima")
            );
        }
    }

    #[test]
    fn semicolons_as_spreadsheets_set_for_italian_write_them() {
        let rows = csv("email;detail\na@b.it;ore 9, Spoleto\n", 4).unwrap();
        assert_eq!(
            rows[0].1.as_ref().unwrap().detail.as_deref(),
            Some("ore 9, Spoleto")
        );
    }

    #[test]
    fn a_malformed_csv_is_refused_with_its_line() {
        for (body, line, words) in [
            ("", 1, "no header"),
            ("email,telefono\na@b.it,1\n", 1, "column 2"),
            ("email,email\n", 1, "twice"),
            ("email,detail\na@b.it,x\"y\n", 2, "quote inside an unquoted"),
            ("email,detail\na@b.it,\"x\"y\n", 2, "after a closing quote"),
            ("email,detail\na@b.it,x\nb@c.it\n", 3, "has 1 fields"),
            ("email,detail\na@b.it,\"never closed\n\n", 2, "never closed"),
        ] {
            let e = csv(body, 3).unwrap_err();
            assert_eq!(e.line, line, "{body:?}: {e}");
            assert!(e.reason.contains(words), "{body:?}: {e}");
        }
        let e = read_all(&mut CsvReader::default(), b"email\na@b.it\n\xc3(\n", 2).unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (3, "is not UTF-8"));
        // Nothing of a row is repeated.
        let e = csv("RSSMRA85T10A562S,3471234567\n", 5).unwrap_err();
        assert!(!e.to_string().contains("RSSMRA") && !e.to_string().contains("347"));
    }

    #[test]
    fn json_rows_come_with_their_lines() {
        let body = "[\n {\"email\": \"a@b.it\", \"detail\": \"ore 9 {x} \\\"y\\\"\"},\n {},\n {\"mobile\": null, \"email\": \"c@d.it\"}\n]\n";
        for chunk in [1, 5, 1000] {
            let rows = json(body, chunk).unwrap();
            assert_eq!(rows.len(), 3);
            assert_eq!(rows[0].0, 2);
            assert_eq!(
                rows[0].1.as_ref().unwrap().detail.as_deref(),
                Some("ore 9 {x} \"y\"")
            );
            assert_eq!(rows[1], (3, None));
            assert_eq!(rows[2].1.as_ref().unwrap().email.as_deref(), Some("c@d.it"));
        }
        assert!(json("[]", 1).unwrap().is_empty());
    }

    #[test]
    fn a_malformed_json_upload_is_refused_with_its_line() {
        for (body, line, words) in [
            ("{}", 1, "JSON array"),
            ("[\n{\"telefono\": \"347\"}]", 2, "unknown member"),
            ("[\n\n{\"mobile\": 3471234567}]", 3, "a string or null"),
            ("[{\"email\": \"a@b.it\"} {}]", 1, "`,` or `]`"),
            (
                "[{\"email\": \"a@b.it\"},\n{\"email\"",
                2,
                "ends inside a row",
            ),
            ("[{\"email\" \"a@b.it\"}]", 1, "not a JSON object"),
            ("[{\"email\": \"a\"}] x", 1, "after the array"),
            ("[1]", 1, "JSON object"),
        ] {
            let e = json(body, 2).unwrap_err();
            assert_eq!(e.line, line, "{body:?}: {e}");
            assert!(e.reason.contains(words), "{body:?}: {e}");
            assert!(!e.reason.contains("347"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_without_a_panic(
            body in proptest::collection::vec(any::<u8>(), 0..400),
            chunk in 1usize..50,
        ) {
            let mut with_head = b"fiscal_code,mobile,email,language,detail\n".to_vec();
            with_head.extend_from_slice(&body);
            if let Ok(rows) = read_all(&mut CsvReader::default(), &with_head, chunk) {
                for (line, _) in rows {
                    prop_assert!(line >= 2);
                }
            }
            let _ = read_all(&mut JsonReader::default(), &body, chunk);
        }

        #[test]
        fn any_text_in_a_quoted_csv_field_reads_back(
            detail in crate::hostile::text(), chunk in 1usize..50,
        ) {
            let body = format!("email,detail\na@b.it,\"{}\"\n", detail.replace('"', "\"\""));
            match read_all(&mut CsvReader::default(), body.as_bytes(), chunk) {
                Ok(rows) => {
                    let got = rows[0].1.as_ref().map(|r| r.detail.clone().unwrap_or_default());
                    prop_assert_eq!(got.unwrap_or_default(), detail);
                }
                // A huge word makes a row longer than any appointment: refused, by its line.
                Err(e) => {
                    prop_assert!(body.len() > MAX_ROW_BYTES);
                    prop_assert_eq!(e.line, 2);
                }
            }
        }

        #[test]
        fn any_text_in_a_json_string_reads_back(
            detail in crate::hostile::text(), chunk in 1usize..50,
        ) {
            let body = serde_json::json!([{"email": "a@b.it", "detail": detail}]).to_string();
            match read_all(&mut JsonReader::default(), body.as_bytes(), chunk) {
                Ok(rows) => prop_assert_eq!(
                    rows[0].1.as_ref().and_then(|r| r.detail.clone()),
                    Some(detail)
                ),
                Err(e) => {
                    prop_assert!(body.len() > MAX_ROW_BYTES);
                    prop_assert!(e.reason.contains("longer than"));
                }
            }
        }
    }
}
