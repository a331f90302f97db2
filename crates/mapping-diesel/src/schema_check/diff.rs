//! Comparing two schema descriptions, one readable line per difference.

use super::description::{SchemaDescription, TableDescription};

pub fn differences(expected: &SchemaDescription, found: &SchemaDescription) -> Vec<String> {
    let mut out = Vec::new();
    for (name, want) in &expected.tables {
        match found.tables.get(name) {
            None => out.push(format!("missing table {name}")),
            Some(have) => table_differences(name, want, have, &mut out),
        }
    }
    for name in found.tables.keys() {
        if !expected.tables.contains_key(name) {
            out.push(format!("unexpected table {name}"));
        }
    }
    out
}

fn table_differences(
    table: &str,
    want: &TableDescription,
    have: &TableDescription,
    out: &mut Vec<String>,
) {
    for w in &want.columns {
        match have.columns.iter().find(|h| h.name == w.name) {
            None => out.push(format!("{table}.{}: missing column ({w})", w.name)),
            Some(h) if h != w => {
                out.push(format!("{table}.{}: expected {w}, found {h}", w.name));
            }
            Some(_) => {}
        }
    }
    for h in &have.columns {
        if !want.columns.iter().any(|w| w.name == h.name) {
            out.push(format!("{table}.{}: unexpected column ({h})", h.name));
        }
    }
    let want_order: Vec<&str> = want.columns.iter().map(|c| c.name.as_str()).collect();
    let have_order: Vec<&str> = have.columns.iter().map(|c| c.name.as_str()).collect();
    let mut want_sorted = want_order.clone();
    let mut have_sorted = have_order.clone();
    want_sorted.sort_unstable();
    have_sorted.sort_unstable();
    if want_sorted == have_sorted && want_order != have_order {
        out.push(format!(
            "{table}: expected column order ({}), found ({})",
            want_order.join(", "),
            have_order.join(", ")
        ));
    }

    if want.primary_key != have.primary_key {
        out.push(format!(
            "{table}: expected primary key ({}), found ({})",
            want.primary_key.join(", "),
            have.primary_key.join(", ")
        ));
    }

    for (name, w) in &want.indexes {
        match have.indexes.get(name) {
            None => out.push(format!("{table}: missing index {name} {w}")),
            Some(h) if h != w => {
                out.push(format!("{table}: index {name}: expected {w}, found {h}"));
            }
            Some(_) => {}
        }
    }
    for (name, h) in &have.indexes {
        if !want.indexes.contains_key(name) {
            out.push(format!("{table}: unexpected index {name} {h}"));
        }
    }

    for (name, w) in &want.unique_constraints {
        match have.unique_constraints.get(name) {
            None => out.push(format!(
                "{table}: missing unique constraint {name} ({})",
                w.join(", ")
            )),
            Some(h) if h != w => out.push(format!(
                "{table}: unique constraint {name}: expected ({}), found ({})",
                w.join(", "),
                h.join(", ")
            )),
            Some(_) => {}
        }
    }
    for (name, h) in &have.unique_constraints {
        if !want.unique_constraints.contains_key(name) {
            out.push(format!(
                "{table}: unexpected unique constraint {name} ({})",
                h.join(", ")
            ));
        }
    }

    for w in &want.foreign_keys {
        match have.foreign_keys.iter().find(|h| h.columns == w.columns) {
            None => out.push(format!("{table}: missing foreign key {w}")),
            Some(h) if h != w => {
                out.push(format!("{table}: foreign key: expected {w}, found {h}"));
            }
            Some(_) => {}
        }
    }
    for h in &have.foreign_keys {
        if !want.foreign_keys.iter().any(|w| w.columns == h.columns) {
            out.push(format!("{table}: unexpected foreign key {h}"));
        }
    }

    for (key, w) in &want.options {
        match have.options.get(key) {
            Some(h) if h == w => {}
            Some(h) => out.push(format!("{table}: expected {key} {w}, found {h}")),
            None => out.push(format!("{table}: expected {key} {w}, found none")),
        }
    }
    for (key, h) in &have.options {
        if !want.options.contains_key(key) {
            out.push(format!("{table}: unexpected {key} {h}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_check::expected::expected;
    use crate::url::BackendKind;

    #[test]
    fn differences_name_what_differs() {
        let want = expected(BackendKind::Mysql);
        assert!(differences(&want, &want).is_empty());

        let mut have = want.clone();
        let im = have.tables.get_mut("instance_mappings").unwrap();
        im.columns
            .iter_mut()
            .find(|c| c.name == "user_id")
            .unwrap()
            .data_type = "varchar(64)".into();
        im.indexes.remove("project_id_idx");
        im.options.insert("charset".into(), "utf8mb4".into());
        have.tables.remove("host_mappings");
        let d = differences(&want, &have);
        assert_eq!(
            d,
            vec![
                "missing table host_mappings",
                "instance_mappings.user_id: expected varchar(255) NULL, found varchar(64) NULL",
                "instance_mappings: missing index project_id_idx (project_id)",
                "instance_mappings: expected charset utf8, found utf8mb4",
            ]
        );
    }

    #[test]
    fn column_order_is_reported() {
        let want = expected(BackendKind::Sqlite);
        let mut have = want.clone();
        let cols = &mut have.tables.get_mut("instance_mappings").unwrap().columns;
        let n = cols.len();
        cols.swap(n - 1, n - 2);
        let d = differences(&want, &have);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].starts_with("instance_mappings: expected column order ("),
            "{d:?}"
        );
    }
}
