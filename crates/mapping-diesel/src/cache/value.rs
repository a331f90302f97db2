//! The bytes stored in memcached: compact, versioned, bound to their key.
//!
//! A mapping value is `b'M'`, the format version, the cells-record stamp it
//! was read under (incarnation and its cell's generation), a fingerprint of
//! the URL-template defaults it was expanded with, the mapping and its cell,
//! then an FNV-1a checksum of the key and everything before. Anything that
//! does not decode exactly (another magic or version, a short or long
//! value, a checksum that does not match this key) is refused: a miss.
//!
//! The cells record (one per server) is `b'C'`, the version, a random
//! incarnation, then (cell-uuid hash, generation) pairs, and the checksum.

use chrono::{DateTime, NaiveDateTime};
use mapping_model::{CellMapping, InstanceMapping, InstanceUuid, Uuid};

use super::client::fnv1a;

/// Format version of both kinds of value; bump when the layout changes.
pub(crate) const VERSION: u8 = 1;
const MAPPING_MAGIC: u8 = b'M';
const CELLS_MAGIC: u8 = b'C';
/// Most cells a record holds (more than any deployment has).
const MAX_CELLS: usize = 100_000;

/// What a mapping value was stored under: checked against the server's
/// cells record on every hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The incarnation of the cells record.
    pub incarnation: u64,
    /// The generation of the mapping's cell in it.
    pub generation: u64,
}

/// The per-server record of cell generations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CellsRecord {
    /// Random, chosen when the record is created: a record that was lost
    /// and made anew never validates a value stored under the old one.
    pub incarnation: u64,
    /// (hash of the lower-case cell uuid, generation), for cells that changed.
    pub generations: Vec<(u64, u64)>,
}

/// The hash identifying a cell in the cells record.
pub(crate) fn cell_hash(uuid: &str) -> u64 {
    fnv1a(&[uuid.to_ascii_lowercase().as_bytes()])
}

impl CellsRecord {
    /// The stamp a mapping in the cell `cell_uuid` is stored under.
    pub(crate) fn stamp(&self, cell_uuid: &str) -> Stamp {
        let h = cell_hash(cell_uuid);
        Stamp {
            incarnation: self.incarnation,
            generation: self
                .generations
                .iter()
                .find(|(c, _)| *c == h)
                .map_or(0, |(_, g)| *g),
        }
    }

    /// Moves the generation of each of these cells on.
    pub(crate) fn bump<'a>(&mut self, cells: impl IntoIterator<Item = &'a String>) {
        for uuid in cells {
            let h = cell_hash(uuid);
            match self.generations.iter_mut().find(|(c, _)| *c == h) {
                Some((_, g)) => *g = g.wrapping_add(1),
                None => self.generations.push((h, 1)),
            }
        }
    }

    /// The stored form, bound to `key`.
    pub(crate) fn encode(&self, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(22 + 16 * self.generations.len());
        out.extend_from_slice(&[CELLS_MAGIC, VERSION]);
        out.extend_from_slice(&self.incarnation.to_le_bytes());
        let n = u32::try_from(self.generations.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        for (c, g) in self.generations.iter().take(n as usize) {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&g.to_le_bytes());
        }
        seal(key, out)
    }

    /// The record stored under `key`, or `None` if `data` is not one.
    pub(crate) fn decode(key: &str, data: &[u8]) -> Option<Self> {
        let mut r = Reader::open(key, data, CELLS_MAGIC)?;
        let incarnation = r.u64()?;
        let n = r.u32()? as usize;
        if n > MAX_CELLS {
            return None;
        }
        let mut generations = Vec::with_capacity(n);
        for _ in 0..n {
            generations.push((r.u64()?, r.u64()?));
        }
        r.finish()?;
        Some(Self {
            incarnation,
            generations,
        })
    }
}

/// Appends the checksum of `key` and `body`.
fn seal(key: &str, mut body: Vec<u8>) -> Vec<u8> {
    let sum = fnv1a(&[key.as_bytes(), &body]);
    body.extend_from_slice(&sum.to_le_bytes());
    body
}

/// Encodes a mapping (which has a cell) stored under `key`.
pub(crate) fn encode_mapping(
    key: &str,
    stamp: Stamp,
    defaults: u64,
    m: &InstanceMapping,
) -> Option<Vec<u8>> {
    let cell = m.cell_mapping.as_ref()?;
    let mut w = Vec::with_capacity(256);
    w.extend_from_slice(&[MAPPING_MAGIC, VERSION]);
    w.extend_from_slice(&stamp.incarnation.to_le_bytes());
    w.extend_from_slice(&stamp.generation.to_le_bytes());
    w.extend_from_slice(&defaults.to_le_bytes());
    w.extend_from_slice(&m.id.to_le_bytes());
    put_str(&mut w, m.instance_uuid.as_str())?;
    put_str(&mut w, &m.project_id)?;
    put_opt_str(&mut w, m.user_id.as_deref())?;
    w.push(u8::from(m.queued_for_delete));
    put_time(&mut w, m.created_at);
    put_time(&mut w, m.updated_at);
    w.extend_from_slice(&cell.id.to_le_bytes());
    put_str(&mut w, &cell.uuid.to_string())?;
    put_opt_str(&mut w, cell.name.as_deref())?;
    put_str(&mut w, &cell.transport_url)?;
    put_str(&mut w, &cell.database_connection)?;
    w.push(u8::from(cell.disabled));
    put_time(&mut w, cell.created_at);
    put_time(&mut w, cell.updated_at);
    Some(seal(key, w))
}

/// A decoded mapping value.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// What it was stored under.
    pub stamp: Stamp,
    /// Fingerprint of the URL defaults it was expanded with.
    pub defaults: u64,
    /// The mapping, with its cell.
    pub mapping: InstanceMapping,
}

/// Decodes a mapping value stored under `key`; `None` for anything else.
pub(crate) fn decode_mapping(key: &str, data: &[u8]) -> Option<Decoded> {
    let mut r = Reader::open(key, data, MAPPING_MAGIC)?;
    let stamp = Stamp {
        incarnation: r.u64()?,
        generation: r.u64()?,
    };
    let defaults = r.u64()?;
    let id = r.i32()?;
    let instance_uuid = r.string()?;
    let project_id = r.string()?;
    let user_id = r.opt_string()?;
    let queued_for_delete = r.bool()?;
    let created_at = r.time()?;
    let updated_at = r.time()?;
    let cell = CellMapping {
        id: r.i32()?,
        uuid: Uuid::parse_str(&r.string()?).ok()?,
        name: r.opt_string()?,
        transport_url: r.string()?,
        database_connection: r.string()?,
        disabled: r.bool()?,
        created_at: r.time()?,
        updated_at: r.time()?,
    };
    r.finish()?;
    // The key names the instance: a value of another instance is refused
    // even if its checksum was forged for this key.
    if !key.ends_with(&instance_uuid) {
        return None;
    }
    Some(Decoded {
        stamp,
        defaults,
        mapping: InstanceMapping {
            id,
            instance_uuid: InstanceUuid::from_stored(instance_uuid),
            cell_mapping: Some(cell),
            project_id,
            user_id,
            queued_for_delete,
            created_at,
            updated_at,
        },
    })
}

fn put_str(w: &mut Vec<u8>, s: &str) -> Option<()> {
    w.extend_from_slice(&u32::try_from(s.len()).ok()?.to_le_bytes());
    w.extend_from_slice(s.as_bytes());
    Some(())
}

fn put_opt_str(w: &mut Vec<u8>, s: Option<&str>) -> Option<()> {
    match s {
        None => w.push(0),
        Some(s) => {
            w.push(1);
            put_str(w, s)?;
        }
    }
    Some(())
}

fn put_time(w: &mut Vec<u8>, t: Option<NaiveDateTime>) {
    match t {
        None => w.push(0),
        Some(t) => {
            let t = t.and_utc();
            w.push(1);
            w.extend_from_slice(&t.timestamp().to_le_bytes());
            w.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
        }
    }
}

/// A cursor over a value whose magic, version and checksum were checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn open(key: &str, data: &'a [u8], magic: u8) -> Option<Self> {
        let (body, sum) = data.split_at_checked(data.len().checked_sub(8)?)?;
        if fnv1a(&[key.as_bytes(), body]).to_le_bytes() != sum {
            return None;
        }
        match body {
            [m, v, rest @ ..] if *m == magic && *v == VERSION => Some(Self { rest }),
            _ => None,
        }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_le_bytes)
    }

    fn bool(&mut self) -> Option<bool> {
        match self.take(1)? {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }

    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    fn opt_string(&mut self) -> Option<Option<String>> {
        if self.bool()? {
            self.string().map(Some)
        } else {
            Some(None)
        }
    }

    fn time(&mut self) -> Option<Option<NaiveDateTime>> {
        if !self.bool()? {
            return Some(None);
        }
        let secs = i64::from_le_bytes(self.array()?);
        let nanos = self.u32()?;
        DateTime::from_timestamp(secs, nanos).map(|t| Some(t.naive_utc()))
    }

    fn finish(self) -> Option<()> {
        self.rest.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> InstanceMapping {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_000).map(|t| t.naive_utc());
        InstanceMapping {
            id: 7,
            instance_uuid: "0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10".into(),
            cell_mapping: Some(CellMapping {
                id: 3,
                uuid: "6a1a7a3c-1d0e-4a55-9d49-3f0a1c2b3d4e".parse().unwrap(),
                name: Some("cell1".into()),
                transport_url: "rabbit://u:p@mq/".into(),
                database_connection: "mysql://u:p@db/nova_cell1".into(),
                disabled: true,
                created_at: t,
                updated_at: None,
            }),
            project_id: "p".into(),
            user_id: None,
            queued_for_delete: false,
            created_at: t,
            updated_at: t,
        }
    }

    const KEY: &str = "x:cm1:im:0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10";
    const STAMP: Stamp = Stamp {
        incarnation: 9,
        generation: 2,
    };

    #[test]
    fn mapping_round_trips_and_is_bound_to_its_key() {
        let m = mapping();
        let v = encode_mapping(KEY, STAMP, 5, &m).unwrap();
        let d = decode_mapping(KEY, &v).unwrap();
        assert_eq!((d.mapping, d.stamp, d.defaults), (m.clone(), STAMP, 5));
        assert!(decode_mapping("y:cm1:im:0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10", &v).is_none());
        // Every truncation, every flipped byte and a trailing byte are refused.
        for n in 0..v.len() {
            assert!(decode_mapping(KEY, &v[..n]).is_none(), "{n}");
            let mut bad = v.clone();
            bad[n] ^= 0x40;
            assert!(decode_mapping(KEY, &bad).is_none(), "{n}");
        }
        let mut long = v.clone();
        long.push(0);
        assert!(decode_mapping(KEY, &long).is_none());
        let mut unscheduled = m;
        unscheduled.cell_mapping = None;
        assert!(encode_mapping(KEY, STAMP, 5, &unscheduled).is_none());
    }

    #[test]
    fn another_version_is_refused_even_with_a_valid_checksum() {
        let v = encode_mapping(KEY, STAMP, 5, &mapping()).unwrap();
        let mut body = v[..v.len() - 8].to_vec();
        body[1] = VERSION + 1;
        assert!(decode_mapping(KEY, &seal(KEY, body)).is_none());
    }

    #[test]
    fn cells_record_round_trips_and_bumps() {
        let mut r = CellsRecord {
            incarnation: 77,
            generations: vec![],
        };
        let cell = "6A1A7A3C-1d0e-4a55-9d49-3f0a1c2b3d4e".to_owned();
        assert_eq!(r.stamp(&cell).generation, 0);
        r.bump([&cell]);
        r.bump([&cell.to_ascii_lowercase()]);
        assert_eq!(
            r.stamp(&cell),
            Stamp {
                incarnation: 77,
                generation: 2
            }
        );
        let v = r.encode("k");
        assert_eq!(CellsRecord::decode("k", &v), Some(r));
        assert!(CellsRecord::decode("other", &v).is_none());
        assert!(decode_mapping("k", &v).is_none());
        assert!(CellsRecord::decode("k", b"garbage garbage").is_none());
    }
}
