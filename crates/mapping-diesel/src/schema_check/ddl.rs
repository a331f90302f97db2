//! A small tokenizer for the SQLite DDL stored in `sqlite_master`, enough to
//! find the named unique constraints SQLite's pragmas do not report.

/// A token of SQLite DDL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare or quoted identifier or keyword (quotes removed).
    Word(String),
    /// Any other single character that matters: `(`, `)`, `,`.
    Punct(char),
    /// A string literal or other character (ignored).
    Other,
}

fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    while let Some(c) = at(i) {
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && at(i + 1) == Some('-') {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == Some('*') {
            i += 2;
            while at(i).is_some() && !(at(i) == Some('*') && at(i + 1) == Some('/')) {
                i += 1;
            }
            i += 2;
        } else if matches!(c, '"' | '`' | '[' | '\'') {
            let close = if c == '[' { ']' } else { c };
            let mut word = String::new();
            i += 1;
            while let Some(d) = at(i) {
                if d == close {
                    // A doubled quote stands for itself.
                    if close != ']' && at(i + 1) == Some(close) {
                        word.push(d);
                        i += 2;
                        continue;
                    }
                    break;
                }
                word.push(d);
                i += 1;
            }
            i += 1;
            out.push(if c == '\'' {
                Token::Other
            } else {
                Token::Word(word)
            });
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let mut word = String::new();
            while let Some(d) = at(i).filter(|d| d.is_alphanumeric() || *d == '_' || *d == '$') {
                word.push(d);
                i += 1;
            }
            out.push(Token::Word(word));
        } else if matches!(c, '(' | ')' | ',') {
            out.push(Token::Punct(c));
            i += 1;
        } else {
            out.push(Token::Other);
            i += 1;
        }
    }
    out
}

fn is_keyword(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
}

/// The named unique constraints (`CONSTRAINT name UNIQUE (cols)` as a table
/// constraint, or `col … CONSTRAINT name UNIQUE` on a column) of a
/// `CREATE TABLE` statement, with their columns.
pub fn sqlite_named_unique_constraints(create_sql: &str) -> Vec<(String, Vec<String>)> {
    let tokens = tokenize(create_sql);
    let mut out = Vec::new();
    let mut depth = 0usize;
    // Index of the first token of the current column or constraint definition.
    let mut element_start: Option<usize> = None;
    let mut i = 0;
    while let Some(tok) = tokens.get(i) {
        match tok {
            Token::Punct('(') => {
                depth += 1;
                if depth == 1 {
                    element_start = Some(i + 1);
                }
            }
            Token::Punct(')') => depth = depth.saturating_sub(1),
            Token::Punct(',') if depth == 1 => element_start = Some(i + 1),
            Token::Word(w) if depth == 1 && w.eq_ignore_ascii_case("CONSTRAINT") => {
                if let (Some(Token::Word(name)), true) =
                    (tokens.get(i + 1), is_keyword(tokens.get(i + 2), "UNIQUE"))
                {
                    let mut j = i + 3;
                    let mut cols = Vec::new();
                    if tokens.get(j) == Some(&Token::Punct('(')) {
                        // Table constraint: the first word of each element.
                        j += 1;
                        let mut inner = 0usize;
                        let mut want_name = true;
                        while let Some(t) = tokens.get(j) {
                            match t {
                                Token::Punct('(') => inner += 1,
                                Token::Punct(')') if inner == 0 => break,
                                Token::Punct(')') => inner -= 1,
                                Token::Punct(',') if inner == 0 => want_name = true,
                                Token::Word(c) if want_name && inner == 0 => {
                                    cols.push(c.clone());
                                    want_name = false;
                                }
                                _ => {}
                            }
                            j += 1;
                        }
                    } else if let Some(Token::Word(c)) = element_start.and_then(|s| tokens.get(s)) {
                        // Column constraint: the column being defined.
                        cols.push(c.clone());
                    }
                    if !cols.is_empty() {
                        out.push((name.clone(), cols));
                    }
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_unique_constraints_are_found_in_sqlite_ddl() {
        let sql = "CREATE TABLE \"t\" (\n  id INTEGER NOT NULL, -- the key, (really)\n  \
                   a VARCHAR(36) CONSTRAINT \"one\" UNIQUE,\n  b TEXT DEFAULT 'x,(y',\n  \
                   c TEXT,\n  PRIMARY KEY (id),\n  CONSTRAINT [two] UNIQUE (b, c COLLATE NOCASE),\n  \
                   UNIQUE (c)\n)";
        assert_eq!(
            sqlite_named_unique_constraints(sql),
            vec![
                ("one".to_owned(), vec!["a".to_owned()]),
                ("two".to_owned(), vec!["b".to_owned(), "c".to_owned()]),
            ]
        );
    }
}
