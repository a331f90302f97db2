//! The testkit's cell database has the shape Nova's migrations give the
//! `instances`, `compute_nodes` and `services` tables on each backend, as
//! recorded in `crates/mapping-testkit/nova-cell-schema/<backend>.txt`:
//! columns in order with nullability (and, on MySQL, the column types), and
//! every index and unique constraint by name.

use std::collections::BTreeSet;

use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use mapping_testkit::{BackendKind, CellDb};

struct Expected {
    /// table -> [(column, nullable)]
    columns: Vec<(String, Vec<(String, bool)>)>,
    /// table -> (index names, unique-constraint names)
    indexes: Vec<(String, BTreeSet<String>, BTreeSet<String>)>,
    /// (table, column) -> MySQL column type
    mysql_types: Vec<(String, String, String)>,
}

fn expected(backend: BackendKind) -> Expected {
    let text = match backend {
        BackendKind::Sqlite => include_str!("../../mapping-testkit/nova-cell-schema/sqlite.txt"),
        BackendKind::Postgres => {
            include_str!("../../mapping-testkit/nova-cell-schema/postgresql.txt")
        }
        BackendKind::Mysql => include_str!("../../mapping-testkit/nova-cell-schema/mysql.txt"),
    };
    let mut e = Expected {
        columns: Vec::new(),
        indexes: Vec::new(),
        mysql_types: Vec::new(),
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["table", name] => {
                e.columns.push(((*name).to_owned(), Vec::new()));
                e.indexes
                    .push(((*name).to_owned(), BTreeSet::new(), BTreeSet::new()));
            }
            ["col", name, rest @ ..] => {
                // Types may have spaces (DOUBLE PRECISION): find the null= word.
                let nullable = rest.contains(&"null=True");
                e.columns
                    .last_mut()
                    .unwrap()
                    .1
                    .push(((*name).to_owned(), nullable));
            }
            ["index", name, ..] => {
                e.indexes.last_mut().unwrap().1.insert((*name).to_owned());
            }
            ["unique", name, ..] => {
                e.indexes.last_mut().unwrap().2.insert((*name).to_owned());
            }
            ["mysql", "coltype", col, ty @ ..] => {
                let table = e.columns.last().unwrap().0.clone();
                e.mysql_types.push((table, (*col).to_owned(), ty.join(" ")));
            }
            _ => {}
        }
    }
    e
}

#[derive(QueryableByName)]
struct Col {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    nullable: i32,
    #[diesel(sql_type = Text)]
    ty: String,
}

#[derive(QueryableByName)]
struct Idx {
    #[diesel(sql_type = Text)]
    name: String,
}

fn actual_columns(
    c: &mut mapping_diesel::DbConnection,
    backend: BackendKind,
    table: &str,
) -> Vec<Col> {
    let sql = match backend {
        BackendKind::Sqlite => format!(
            "SELECT name, CASE WHEN \"notnull\" = 1 OR pk = 1 THEN 0 ELSE 1 END AS nullable, type AS ty \
             FROM pragma_table_info('{table}') ORDER BY cid"
        ),
        BackendKind::Postgres => format!(
            "SELECT column_name::text AS name, CASE WHEN is_nullable = 'YES' THEN 1 ELSE 0 END AS nullable, \
             data_type::text AS ty FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '{table}' ORDER BY ordinal_position"
        ),
        BackendKind::Mysql => format!(
            "SELECT CAST(column_name AS CHAR) AS name, CAST(IF(is_nullable = 'YES', 1, 0) AS SIGNED) AS nullable, \
             CAST(column_type AS CHAR) AS ty FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    };
    diesel::sql_query(sql).load(c).unwrap()
}

fn actual_indexes(
    c: &mut mapping_diesel::DbConnection,
    backend: BackendKind,
    table: &str,
) -> BTreeSet<String> {
    let sql = match backend {
        BackendKind::Sqlite => format!(
            "SELECT name FROM pragma_index_list('{table}') WHERE origin <> 'pk'"
        ),
        BackendKind::Postgres => format!(
            "SELECT indexname::text AS name FROM pg_indexes \
             WHERE schemaname = current_schema() AND tablename = '{table}' AND indexname <> '{table}_pkey'"
        ),
        BackendKind::Mysql => format!(
            "SELECT DISTINCT CAST(index_name AS CHAR) AS name FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = '{table}' AND index_name <> 'PRIMARY'"
        ),
    };
    diesel::sql_query(sql)
        .load::<Idx>(c)
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect()
}

mapping_testkit::backend_tests! {
    fn cell_tables_match_novas_schema(t) {
        let backend = t.backend();
        let cdb = CellDb::new(backend);
        let e = expected(backend);
        cdb.db.with_connection(|c| {
            for (table, cols) in &e.columns {
                let got = actual_columns(c, backend, table);
                let got_cols: Vec<(String, bool)> = got.iter().map(|c| (c.name.clone(), c.nullable == 1)).collect();
                assert_eq!(&got_cols, cols, "{table}: columns and nullability on {backend:?}");
                if backend == BackendKind::Mysql {
                    for (tt, col, ty) in e.mysql_types.iter().filter(|(tt, _, _)| tt == table) {
                        let actual = got.iter().find(|c| &c.name == col).map(|c| c.ty.clone());
                        assert_eq!(actual.as_deref(), Some(ty.as_str()), "{tt}.{col} type on MySQL");
                    }
                }
            }
            for (table, indexes, uniques) in &e.indexes {
                let got = actual_indexes(c, backend, table);
                if backend == BackendKind::Sqlite {
                    // SQLite keeps no name for a UNIQUE constraint: its index
                    // is `sqlite_autoindex_<table>_<n>`. Count those instead.
                    let (auto, named): (BTreeSet<String>, BTreeSet<String>) =
                        got.into_iter().partition(|n| n.starts_with("sqlite_autoindex_"));
                    assert_eq!(&named, indexes, "{table}: indexes on SQLite");
                    assert_eq!(auto.len(), uniques.difference(indexes).count(), "{table}: unique constraints on SQLite");
                } else {
                    let all: BTreeSet<String> = indexes.union(uniques).cloned().collect();
                    assert_eq!(got, all, "{table}: indexes and unique constraints on {backend:?}");
                }
            }
            Ok(())
        }).unwrap();
    }
}
