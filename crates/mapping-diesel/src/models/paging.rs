//! Lists of any size in constant memory: keyset pages (on id) of the
//! mappings of a cell or of a project, and an iterator walking them.

use diesel::prelude::*;
use mapping_model::schema::{cell_mappings, instance_mappings};
use mapping_model::{validate, Error, InstanceMapping, Result};

use super::cell_mapping::CellRow;
use super::instance_mapping::{InstanceMappings, InstanceRow};
use crate::db::{Executor, Op, Tx};
use crate::errors::db_err;

/// Most mappings one page may hold.
pub const MAX_PAGE_SIZE: u32 = 100_000;

/// Which mappings a walk goes through.
#[derive(Debug, Clone)]
enum Key {
    Cell(i32),
    Project(String),
}

fn page(
    tx: &mut Tx<'_>,
    key: &Key,
    after_id: Option<i32>,
    limit: u32,
) -> Result<Vec<InstanceMapping>> {
    let mut q = instance_mappings::table
        .left_join(cell_mappings::table)
        .select((InstanceRow::as_select(), Option::<CellRow>::as_select()))
        .order(instance_mappings::id.asc())
        .limit(i64::from(limit))
        .into_boxed();
    q = match key {
        Key::Cell(id) => q.filter(instance_mappings::cell_id.eq(*id)),
        Key::Project(p) => q.filter(instance_mappings::project_id.eq(p.as_str())),
    };
    if let Some(after) = after_id {
        q = q.filter(instance_mappings::id.gt(after));
    }
    let rows = q
        .load::<(InstanceRow, Option<CellRow>)>(tx.conn)
        .map_err(db_err("instance_mapping_list.page"))?;
    super::instance_mapping::objects(rows, &tx.shared.options)
}

fn check_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(Error::InvalidInput {
            field: "limit",
            reason: format!("{limit} is not between 1 and {MAX_PAGE_SIZE}"),
        });
    }
    Ok(())
}

impl<E: Executor> InstanceMappings<E> {
    /// One page of the mappings in the cell with this id: at most `limit`
    /// (1 to [`MAX_PAGE_SIZE`]) of those whose id is greater than `after_id`,
    /// in id order, each with its cell. Pass the last id of a page to get
    /// the next; an empty page is the end. Keyset paging: each page is one
    /// indexed range read, however far the walk has gone.
    pub fn get_page_by_cell_id(
        &mut self,
        cell_id: i32,
        after_id: Option<i32>,
        limit: u32,
    ) -> Result<Vec<InstanceMapping>> {
        check_limit(limit)?;
        let key = Key::Cell(cell_id);
        self.exec.run(
            Op::read("instance_mapping_list.get_page_by_cell_id"),
            &mut |tx| page(tx, &key, after_id, limit),
        )
    }

    /// One page of the project's mappings, as
    /// [`get_page_by_cell_id`](Self::get_page_by_cell_id) pages a cell's.
    pub fn get_page_by_project_id(
        &mut self,
        project_id: &str,
        after_id: Option<i32>,
        limit: u32,
    ) -> Result<Vec<InstanceMapping>> {
        validate::required_varchar("project_id", project_id)?;
        check_limit(limit)?;
        let key = Key::Project(project_id.to_owned());
        self.exec.run(
            Op::read("instance_mapping_list.get_page_by_project_id"),
            &mut |tx| page(tx, &key, after_id, limit),
        )
    }

    /// Every mapping in the cell with this id, in id order, read
    /// `page_size` at a time: memory stays bounded by one page whatever the
    /// size of the cell. Each page is its own read (outside a transaction,
    /// mappings added or removed meanwhile may or may not be seen; none is
    /// seen twice).
    ///
    /// ```
    /// # use mapping_diesel::Database;
    /// # use mapping_model::{Error, NewCellMapping, NewInstanceMapping, Uuid};
    /// let db = Database::open("sqlite://")?;
    /// db.migrate()?;
    /// let cell = db.cells().create(NewCellMapping::new(Uuid::new_v4().to_string(), "", ""))?;
    /// for _ in 0..5 {
    ///     db.instance_mappings()
    ///         .create(NewInstanceMapping::new(Uuid::new_v4().to_string(), "p", "u").cell(&cell))?;
    /// }
    /// let mut ims = db.instance_mappings();
    /// let mut n = 0;
    /// for im in ims.walk_by_cell_id(cell.id, 2) {
    ///     assert_eq!(im?.cell_mapping.as_ref(), Some(&cell));
    ///     n += 1;
    /// }
    /// assert_eq!(n, 5);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn walk_by_cell_id(&mut self, cell_id: i32, page_size: u32) -> Walk<'_, E> {
        Walk::new(self, Key::Cell(cell_id), page_size)
    }

    /// Every mapping of the project, in id order, `page_size` at a time
    /// (see [`walk_by_cell_id`](Self::walk_by_cell_id)).
    pub fn walk_by_project_id(&mut self, project_id: &str, page_size: u32) -> Walk<'_, E> {
        Walk::new(self, Key::Project(project_id.to_owned()), page_size)
    }
}

/// An iterator over the mappings of a cell or project, one page in memory
/// at a time; from [`InstanceMappings::walk_by_cell_id`] and
/// [`InstanceMappings::walk_by_project_id`]. After an error it ends.
pub struct Walk<'m, E> {
    api: &'m mut InstanceMappings<E>,
    key: Key,
    page_size: u32,
    after_id: Option<i32>,
    /// The page being handed out (its buffer freed before the next is read).
    buffered: std::vec::IntoIter<InstanceMapping>,
    done: bool,
}

impl<'m, E: Executor> Walk<'m, E> {
    fn new(api: &'m mut InstanceMappings<E>, key: Key, page_size: u32) -> Self {
        Self {
            api,
            key,
            page_size,
            after_id: None,
            buffered: Vec::new().into_iter(),
            done: false,
        }
    }

    fn fetch(&mut self) -> Result<()> {
        // The spent page's buffer goes before the next page is read, so at
        // most one page is held.
        self.buffered = Vec::new().into_iter();
        let next = match &self.key {
            Key::Cell(id) => self
                .api
                .get_page_by_cell_id(*id, self.after_id, self.page_size)?,
            Key::Project(p) => {
                let p = p.clone();
                self.api
                    .get_page_by_project_id(&p, self.after_id, self.page_size)?
            }
        };
        if next.len() < self.page_size as usize {
            self.done = true;
        }
        self.after_id = next.last().map(|im| im.id).or(self.after_id);
        self.buffered = next.into_iter();
        Ok(())
    }
}

impl<E: Executor> Iterator for Walk<'_, E> {
    type Item = Result<InstanceMapping>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.len() == 0 && !self.done {
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buffered.next().map(Ok)
    }
}
