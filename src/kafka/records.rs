//! Kafka's record batches (message format v2, the only one Kafka 4 keeps), read straight from
//! a fetch answer into one buffer of values: no allocation per record.
//!
//! rskafka hands every record over as its own allocations (key, value, a headers map), which
//! cost the consumer more than decoding the JSON in them (BENCHMARKS.md, issue 14). Here a
//! fetch's batches become a [`RecordSet`]: the values side by side in one `Vec<u8>` and, per
//! record, its offset and where its value is. Keys, headers and timestamps are skipped (the
//! consumer uses none of them).
//!
//! What a reader must get right, and does here:
//! * every batch's CRC-32C is checked before anything in it is used;
//! * compressed batches (gzip, snappy in both its raw and its Java "xerial" framing, lz4,
//!   zstd) are decompressed, at most [`MAX_BATCH_BYTES`] each, so a hostile batch cannot take
//!   the memory;
//! * control batches (transaction markers) and the records of aborted transactions are left
//!   out, as a `read_committed` consumer must (the broker sends aborted records and a list of
//!   aborted transactions; rskafka delivered them as if committed);
//! * records before the requested offset (a batch is sent whole) and from the range's end on
//!   are left out, and [`RecordSet::next_offset`] moves past everything read, including
//!   batches that held no record to keep (markers, aborted data, compacted gaps);
//! * a batch cut short at the end of an answer (the broker fills up to the byte limit) is left
//!   for the next fetch; any other short or malformed field is an error naming the offset.

use std::collections::HashSet;
use std::io::Read;
use std::ops::Range;

/// A decompressed batch larger than this is refused: the broker's own limit on a batch is
/// `message.max.bytes` (1 MiB by default) compressed, and plant records compress about 4×.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Values one fetch's [`RecordSet`] takes at most: once past it, the batches left in the
/// answer are left for the next fetch (a few bytes of zstd can hold 64 MiB of values).
pub const MAX_SET_BYTES: usize = 64 * 1024 * 1024;

/// Bytes before the first record of a v2 batch.
const BATCH_HEADER: usize = 61;
/// Bytes of a batch that come before `batchLength` counts: `baseOffset` and `batchLength`.
const LOG_OVERHEAD: usize = 12;
const ATTR_COMPRESSION: i16 = 0x07;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
/// The Java client's snappy framing ("xerial"): this magic, two version words, then chunks.
const XERIAL_MAGIC: &[u8] = &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

/// A transaction the broker says was aborted: the producer's records from `first_offset` on,
/// up to its abort marker, are not to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// One record kept: its offset and where its value is in [`RecordSet::values`] (`None`: a
/// null value, which the consumer reports as a bad record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    pub offset: i64,
    value: Option<Range<u32>>,
}

/// The records of one fetch, in offset order.
#[derive(Debug, Default)]
pub struct RecordSet {
    values: Vec<u8>,
    records: Vec<RecordRef>,
    /// The offset after the last batch read whole: where the next fetch starts.
    pub next_offset: i64,
}

/// Why a fetch answer's records cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the record batch at offset {offset} is corrupt: {reason}")]
    Corrupt { offset: i64, reason: String },
    #[error(
        "the record batch at offset {offset} uses message format v{magic}, which Kafka 4 and \
         this consumer no longer read; upgrade the topic's data (re-produce it) with a client \
         of Kafka 0.11 or later"
    )]
    OldFormat { offset: i64, magic: i8 },
    /// Well formed, but beyond what this reader takes: no retry changes it.
    #[error("the record batch at offset {offset} cannot be read: {reason}")]
    Unreadable { offset: i64, reason: String },
}

impl RecordError {
    /// Whether fetching the batch again may help: a corruption in transit goes away, a
    /// batch too large or in an unknown codec does not.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }

    fn corrupt(offset: i64, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            offset,
            reason: reason.into(),
        }
    }
}

impl RecordSet {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn records(&self) -> &[RecordRef] {
        &self.records
    }

    /// The value of a record of this set.
    pub fn value(&self, record: &RecordRef) -> Option<&[u8]> {
        let range = record.value.as_ref()?;
        Some(&self.values[range.start as usize..range.end as usize])
    }

    /// Adds a record; `None` when its value would not fit a set's u32 positions (never
    /// with [`MAX_SET_BYTES`] and [`MAX_BATCH_BYTES`] far below 4 GiB).
    fn push(&mut self, offset: i64, value: Option<&[u8]>) -> Option<()> {
        let value = match value {
            None => None,
            Some(v) => {
                let start = u32::try_from(self.values.len()).ok()?;
                let end = u32::try_from(self.values.len() + v.len()).ok()?;
                self.values.extend_from_slice(v);
                Some(start..end)
            }
        };
        self.records.push(RecordRef { offset, value });
        Some(())
    }
}

/// Reads the batches of one partition's fetch answer: the records with offsets in `wanted`,
/// committed ones only (`aborted` is the answer's list of aborted transactions). `scratch`
/// holds decompressed batches; its allocation is kept for the next call.
pub fn read_batches(
    data: &[u8],
    wanted: Range<i64>,
    aborted: &[AbortedTransaction],
    scratch: &mut Vec<u8>,
) -> Result<RecordSet, RecordError> {
    let mut set = RecordSet {
        next_offset: wanted.start,
        // Values take most of a batch: one allocation, not a doubling series of them.
        values: Vec::with_capacity(data.len()),
        records: Vec::new(),
    };
    let mut aborts = Aborts::new(aborted);
    let mut rest = data;
    while let Some(batch) = next_batch(&mut rest)? {
        if set.values.len() >= MAX_SET_BYTES {
            break; // enough for one fetch: the rest comes with the next
        }
        let header = BatchHeader::read(batch)?;
        let wanted_here = header.last_offset() >= wanted.start && header.base_offset < wanted.end;
        if wanted_here && !aborts.skips(&header, batch)? {
            let records = header.records(batch, scratch)?;
            read_records(&header, records, &wanted, &mut set)?;
        }
        set.next_offset = set.next_offset.max(header.last_offset().saturating_add(1));
    }
    Ok(set)
}

/// The next whole batch of `rest`, or `None` at the end (or at a batch the answer cut short).
fn next_batch<'a>(rest: &mut &'a [u8]) -> Result<Option<&'a [u8]>, RecordError> {
    if rest.len() < LOG_OVERHEAD {
        return Ok(None);
    }
    let base_offset = i64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
    let length = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
    let length = usize::try_from(length)
        .map_err(|_| RecordError::corrupt(base_offset, format!("a length of {length}")))?;
    let Some(total) = length
        .checked_add(LOG_OVERHEAD)
        .filter(|&t| t <= rest.len())
    else {
        return Ok(None); // cut short by the fetch's byte limit: the next fetch brings it
    };
    let (batch, tail) = rest.split_at(total);
    *rest = tail;
    Ok(Some(batch))
}

/// The fixed fields of a v2 batch this reader uses.
struct BatchHeader {
    base_offset: i64,
    attributes: i16,
    last_offset_delta: i32,
    producer_id: i64,
    count: i32,
}

impl BatchHeader {
    /// Reads and checks a whole batch's header (format, CRC).
    fn read(batch: &[u8]) -> Result<Self, RecordError> {
        let base_offset = i64::from_be_bytes(batch[0..8].try_into().expect("8 bytes"));
        if batch.len() < 17 {
            return Err(RecordError::corrupt(base_offset, "it ends in its header"));
        }
        let magic = batch[16] as i8;
        if magic != 2 {
            return Err(RecordError::OldFormat {
                offset: base_offset,
                magic,
            });
        }
        if batch.len() < BATCH_HEADER {
            return Err(RecordError::corrupt(base_offset, "it ends in its header"));
        }
        let crc = u32::from_be_bytes(batch[17..21].try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(&batch[21..]);
        if crc != computed {
            return Err(RecordError::corrupt(
                base_offset,
                format!("its CRC-32C is {computed:#010x}, the batch says {crc:#010x}"),
            ));
        }
        let i16_at = |at: usize| i16::from_be_bytes(batch[at..at + 2].try_into().expect("2"));
        let i32_at = |at: usize| i32::from_be_bytes(batch[at..at + 4].try_into().expect("4"));
        let i64_at = |at: usize| i64::from_be_bytes(batch[at..at + 8].try_into().expect("8"));
        Ok(Self {
            base_offset,
            attributes: i16_at(21),
            last_offset_delta: i32_at(23),
            producer_id: i64_at(43),
            count: i32_at(57),
        })
    }

    fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// The batch's records section, decompressed into `scratch` if it is compressed.
    fn records<'a>(
        &self,
        batch: &'a [u8],
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], RecordError> {
        let body = &batch[BATCH_HEADER..];
        let codec = self.attributes & ATTR_COMPRESSION;
        if codec == 0 {
            return Ok(body);
        }
        let offset = self.base_offset;
        if !(1..=4).contains(&codec) {
            return Err(RecordError::Unreadable {
                offset,
                reason: format!(
                    "compression codec {codec} is none Kafka defines (gzip 1, snappy 2, lz4 3, \
                     zstd 4); check the producer that wrote it"
                ),
            });
        }
        scratch.clear();
        decompress(codec, body, scratch).map_err(|error| match error {
            Unpack::Corrupt(reason) => RecordError::corrupt(offset, reason),
            Unpack::TooLarge => RecordError::Unreadable {
                offset,
                reason: format!(
                    "it decompresses to more than {} MiB; lower the producer's batch size \
                     (batch.size) or read the topic with another client",
                    MAX_BATCH_BYTES / (1024 * 1024)
                ),
            },
        })?;
        Ok(scratch)
    }
}

/// Why a compressed batch did not decompress.
enum Unpack {
    Corrupt(String),
    /// Past [`MAX_BATCH_BYTES`].
    TooLarge,
}

impl From<String> for Unpack {
    fn from(reason: String) -> Self {
        Self::Corrupt(reason)
    }
}

/// Decompresses a batch's records section with Kafka's codec number `codec` (1 to 4).
fn decompress(codec: i16, body: &[u8], out: &mut Vec<u8>) -> Result<(), Unpack> {
    match codec {
        1 => read_capped(flate2::read::MultiGzDecoder::new(body), out, "gzip"),
        2 => snappy(body, out),
        3 => {
            let decoder = lz4::Decoder::new(body).map_err(|e| format!("lz4: {e}"))?;
            read_capped(decoder, out, "lz4")
        }
        _ => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(body).map_err(|e| format!("zstd: {e}"))?;
            read_capped(decoder, out, "zstd")
        }
    }
}

/// Reads a decoder to its end into `out`, refusing more than [`MAX_BATCH_BYTES`].
fn read_capped(decoder: impl Read, out: &mut Vec<u8>, codec: &str) -> Result<(), Unpack> {
    let cap = MAX_BATCH_BYTES as u64;
    let read = decoder
        .take(cap + 1)
        .read_to_end(out)
        .map_err(|e| format!("{codec}: {e}"))?;
    if read as u64 > cap {
        return Err(Unpack::TooLarge);
    }
    Ok(())
}

/// Snappy as Kafka clients write it: the Java client's xerial framing (magic, version words,
/// then length-prefixed raw blocks), or one raw block (librdkafka, Go clients).
fn snappy(body: &[u8], out: &mut Vec<u8>) -> Result<(), Unpack> {
    let Some(mut framed) = body.strip_prefix(XERIAL_MAGIC) else {
        return snappy_block(body, out);
    };
    if framed.len() < 8 {
        return Err(Unpack::Corrupt(
            "snappy: the xerial header ends early".into(),
        ));
    }
    framed = &framed[8..]; // version and compatible version
    while !framed.is_empty() {
        if framed.len() < 4 {
            return Err(Unpack::Corrupt("snappy: a chunk length ends early".into()));
        }
        let len = u32::from_be_bytes(framed[..4].try_into().expect("4 bytes")) as usize;
        framed = &framed[4..];
        if len > framed.len() {
            let left = framed.len();
            return Err(Unpack::Corrupt(format!(
                "snappy: a chunk of {len} bytes where {left} are left"
            )));
        }
        snappy_block(&framed[..len], out)?;
        framed = &framed[len..];
    }
    Ok(())
}

fn snappy_block(block: &[u8], out: &mut Vec<u8>) -> Result<(), Unpack> {
    let len = snap::raw::decompress_len(block).map_err(|e| format!("snappy: {e}"))?;
    if out.len() + len > MAX_BATCH_BYTES {
        return Err(Unpack::TooLarge);
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| format!("snappy: {e}"))?;
    Ok(())
}

/// The records of one batch with offsets in `wanted`, into `set`.
fn read_records(
    header: &BatchHeader,
    mut records: &[u8],
    wanted: &Range<i64>,
    set: &mut RecordSet,
) -> Result<(), RecordError> {
    let corrupt = |reason: &str| RecordError::corrupt(header.base_offset, reason);
    let count = usize::try_from(header.count).map_err(|_| corrupt("a negative record count"))?;
    // Every record takes at least 7 bytes: a count past that is garbage, not a reservation.
    if count > records.len() / 7 + 1 {
        return Err(corrupt("more records than bytes"));
    }
    for _ in 0..count {
        let record = Record::read(&mut records).map_err(corrupt)?;
        if record.offset_delta < 0 || record.offset_delta > header.last_offset_delta {
            return Err(corrupt("a record's offset outside its batch"));
        }
        let offset = header
            .base_offset
            .saturating_add(i64::from(record.offset_delta));
        if wanted.contains(&offset) {
            set.push(offset, record.value)
                .ok_or_else(|| corrupt("more values than one fetch holds"))?;
        }
    }
    Ok(())
}

/// The parts of one record the consumer uses.
struct Record<'a> {
    offset_delta: i32,
    value: Option<&'a [u8]>,
}

impl<'a> Record<'a> {
    /// Reads one record off the front of `rest`.
    fn read(rest: &mut &'a [u8]) -> Result<Self, &'static str> {
        let length = varint(rest)?;
        let length = usize::try_from(length).map_err(|_| "a negative record length")?;
        if length > rest.len() {
            return Err("a record longer than its batch");
        }
        let (mut r, tail) = rest.split_at(length);
        *rest = tail;
        let r = &mut r;
        take(r, 1)?; // attributes (unused in v2)
        varlong(r)?; // timestamp delta
        let offset_delta = i32::try_from(varint(r)?).map_err(|_| "an offset delta past i32")?;
        let _key = nullable_bytes(r)?;
        let value = nullable_bytes(r)?;
        // Headers are not used; a record's length already bounds them, so they are skipped.
        Ok(Self {
            offset_delta,
            value,
        })
    }
}

/// A `varint`-length byte string; a negative length is null.
fn nullable_bytes<'a>(r: &mut &'a [u8]) -> Result<Option<&'a [u8]>, &'static str> {
    let len = varint(r)?;
    if len < 0 {
        return Ok(None);
    }
    take(r, len as usize).map(Some)
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
    if n > r.len() {
        return Err("a field longer than its record");
    }
    let (head, tail) = r.split_at(n);
    *r = tail;
    Ok(head)
}

/// A zigzag varint of at most 32 bits.
fn varint(r: &mut &[u8]) -> Result<i64, &'static str> {
    let v = varlong(r)?;
    if v < i64::from(i32::MIN) || v > i64::from(i32::MAX) {
        return Err("a varint past 32 bits");
    }
    Ok(v)
}

/// A zigzag varint of at most 64 bits (Kafka's `varlong`).
fn varlong(r: &mut &[u8]) -> Result<i64, &'static str> {
    let mut value: u64 = 0;
    for (i, &byte) in r.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *r = &r[i + 1..];
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err("a varint that does not end")
}

/// Which transactional batches belong to aborted transactions (Kafka's own consumer does the
/// same): an aborted transaction's producer is "aborting" from its first offset until its
/// abort marker.
struct Aborts {
    /// The answer's aborted transactions by first offset, not reached yet.
    pending: Vec<AbortedTransaction>,
    aborting: HashSet<i64>,
}

impl Aborts {
    fn new(aborted: &[AbortedTransaction]) -> Self {
        let mut pending = aborted.to_vec();
        // Reversed, so the next one to reach is popped off the end.
        pending.sort_by_key(|a| std::cmp::Reverse(a.first_offset));
        Self {
            pending,
            aborting: HashSet::new(),
        }
    }

    /// Whether `header`'s batch holds no records to read: a control batch, or data of an
    /// aborted transaction.
    fn skips(&mut self, header: &BatchHeader, batch: &[u8]) -> Result<bool, RecordError> {
        if !header.is_transactional() {
            return Ok(header.is_control());
        }
        while let Some(next) = self.pending.last()
            && next.first_offset <= header.last_offset()
        {
            self.aborting.insert(next.producer_id);
            self.pending.pop();
        }
        if header.is_control() {
            if is_abort_marker(header, batch)? {
                self.aborting.remove(&header.producer_id);
            }
            return Ok(true);
        }
        Ok(self.aborting.contains(&header.producer_id))
    }
}

/// Whether a control batch is an abort marker: its one record's key is (version i16, type
/// i16) with type 0 for ABORT, 1 for COMMIT. Control batches are never compressed.
fn is_abort_marker(header: &BatchHeader, batch: &[u8]) -> Result<bool, RecordError> {
    let mut records = &batch[BATCH_HEADER..];
    let corrupt = |what: &str| RecordError::corrupt(header.base_offset, what);
    let length = varint(&mut records).map_err(corrupt)?;
    let mut r = take(
        &mut records,
        usize::try_from(length).map_err(|_| corrupt("a length"))?,
    )
    .map_err(corrupt)?;
    let r = &mut r;
    take(r, 1).map_err(corrupt)?;
    varlong(r).map_err(corrupt)?;
    varint(r).map_err(corrupt)?;
    let key = nullable_bytes(r)
        .map_err(corrupt)?
        .filter(|k| k.len() >= 4)
        .ok_or_else(|| corrupt("a control record without its key"))?;
    Ok(i16::from_be_bytes([key[2], key[3]]) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a zigzag varint the way Kafka does (the tests' own writer; the reader is
    /// checked against batches librdkafka and the Java client write in tests/consume.rs).
    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn record(offset_delta: i64, value: Option<&[u8]>) -> Vec<u8> {
        let mut body = vec![0u8];
        put_varint(&mut body, 0);
        put_varint(&mut body, offset_delta);
        put_varint(&mut body, -1); // null key
        match value {
            Some(v) => {
                put_varint(&mut body, v.len() as i64);
                body.extend_from_slice(v);
            }
            None => put_varint(&mut body, -1),
        }
        put_varint(&mut body, 0);
        let mut out = Vec::new();
        put_varint(&mut out, body.len() as i64);
        out.extend(body);
        out
    }

    fn batch(base: i64, attributes: i16, producer: i64, records: &[Vec<u8>]) -> Vec<u8> {
        let mut tail = Vec::new(); // from attributes on: what the CRC covers
        tail.extend(attributes.to_be_bytes());
        tail.extend((records.len() as i32 - 1).to_be_bytes());
        tail.extend(0i64.to_be_bytes());
        tail.extend(0i64.to_be_bytes());
        tail.extend(producer.to_be_bytes());
        tail.extend(0i16.to_be_bytes());
        tail.extend(0i32.to_be_bytes());
        tail.extend((records.len() as i32).to_be_bytes());
        for r in records {
            tail.extend(r);
        }
        let mut out = Vec::new();
        out.extend(base.to_be_bytes());
        out.extend(((tail.len() + 9) as i32).to_be_bytes());
        out.extend(0i32.to_be_bytes());
        out.push(2);
        out.extend(crc32c::crc32c(&tail).to_be_bytes());
        out.extend(tail);
        out
    }

    fn offsets(set: &RecordSet) -> Vec<i64> {
        set.records().iter().map(|r| r.offset).collect()
    }

    #[test]
    fn reads_values_and_cuts_to_the_range() {
        let b = batch(
            10,
            0,
            -1,
            &[
                record(0, Some(b"a")),
                record(1, None),
                record(2, Some(b"ccc")),
            ],
        );
        let set = read_batches(&b, 11..13, &[], &mut Vec::new()).unwrap();
        assert_eq!(offsets(&set), [11, 12]);
        assert_eq!(set.value(&set.records()[0]), None);
        assert_eq!(set.value(&set.records()[1]), Some(&b"ccc"[..]));
        assert_eq!(set.next_offset, 13);
    }

    #[test]
    fn a_batch_cut_short_waits_and_a_bad_crc_is_an_error() {
        let b = batch(0, 0, -1, &[record(0, Some(b"x"))]);
        let mut two = b.clone();
        two.extend(&b[..b.len() - 3]);
        let set = read_batches(&two, 0..10, &[], &mut Vec::new()).unwrap();
        assert_eq!((offsets(&set), set.next_offset), (vec![0], 1));
        let mut bad = b.clone();
        *bad.last_mut().unwrap() ^= 1;
        let error = read_batches(&bad, 0..10, &[], &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("offset 0") && error.contains("CRC"),
            "{error}"
        );
    }

    #[test]
    fn aborted_transactions_and_markers_are_left_out() {
        const TXN: i16 = ATTR_TRANSACTIONAL;
        let marker = |base, kind: i16| {
            let key = [0u8, 0, 0, kind as u8];
            let mut body = vec![0u8];
            put_varint(&mut body, 0);
            put_varint(&mut body, 0);
            put_varint(&mut body, 4);
            body.extend(key);
            put_varint(&mut body, -1);
            put_varint(&mut body, 0);
            let mut rec = Vec::new();
            put_varint(&mut rec, body.len() as i64);
            rec.extend(body);
            batch(base, TXN | ATTR_CONTROL, 7, &[rec])
        };
        let mut data = batch(0, TXN, 7, &[record(0, Some(b"aborted"))]);
        data.extend(marker(1, 0));
        data.extend(batch(2, 0, -1, &[record(0, Some(b"plain"))]));
        data.extend(batch(3, TXN, 7, &[record(0, Some(b"committed"))]));
        data.extend(marker(4, 1));
        let aborted = [AbortedTransaction {
            producer_id: 7,
            first_offset: 0,
        }];
        let set = read_batches(&data, 0..100, &aborted, &mut Vec::new()).unwrap();
        assert_eq!(offsets(&set), [2, 3]);
        assert_eq!(set.next_offset, 5);
        // Without the broker's list, the same data reads as committed.
        assert_eq!(
            offsets(&read_batches(&data, 0..100, &[], &mut Vec::new()).unwrap()),
            [0, 2, 3]
        );
    }

    #[test]
    fn a_record_outside_its_batch_and_an_unknown_codec_are_refused() {
        // Two records, but a batch header that says it ends at its first.
        let mut b = batch(0, 0, -1, &[record(0, Some(b"a")), record(1, Some(b"b"))]);
        b[23..27].copy_from_slice(&0i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let error = read_batches(&b, 0..10, &[], &mut Vec::new()).unwrap_err();
        assert!(error.is_retriable() && error.to_string().contains("outside its batch"));
        let odd = batch(0, 6, -1, &[record(0, Some(b"a"))]);
        let error = read_batches(&odd, 0..10, &[], &mut Vec::new()).unwrap_err();
        assert!(
            !error.is_retriable() && error.to_string().contains("codec 6"),
            "{error}"
        );
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let b = batch(5, 0, -1, &[record(0, Some(b"abc")), record(1, Some(b"d"))]);
        for cut in 0..b.len() {
            let mut broken = b.clone();
            broken[cut] ^= 0xff;
            let _ = read_batches(&broken, 0..100, &[], &mut Vec::new());
            let _ = read_batches(&b[..cut], 0..100, &[], &mut Vec::new());
        }
        let mut old = b.clone();
        old[16] = 1;
        let error = read_batches(&old, 0..100, &[], &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("v1"), "{error}");
    }
}
