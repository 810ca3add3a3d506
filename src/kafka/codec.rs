//! The few pieces of Kafka's (non-flexible) wire format our hand-written requests use. Every
//! read is bounds-checked, so a short or garbled answer is an error, never a panic.

use bytes::{Buf, BufMut, BytesMut};

pub fn put_string(buf: &mut BytesMut, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    buf.put_i16(bytes.len() as i16);
    buf.put_slice(bytes);
}

pub fn need(r: &[u8], n: usize) -> Result<(), String> {
    if r.remaining() < n {
        Err("response ended early".into())
    } else {
        Ok(())
    }
}

pub fn i8_(r: &mut &[u8]) -> Result<i8, String> {
    need(r, 1)?;
    Ok(r.get_i8())
}

pub fn i16_(r: &mut &[u8]) -> Result<i16, String> {
    need(r, 2)?;
    Ok(r.get_i16())
}

pub fn i32_(r: &mut &[u8]) -> Result<i32, String> {
    need(r, 4)?;
    Ok(r.get_i32())
}

pub fn i64_(r: &mut &[u8]) -> Result<i64, String> {
    need(r, 8)?;
    Ok(r.get_i64())
}

pub fn string(r: &mut &[u8]) -> Result<Option<String>, String> {
    let len = i16_(r)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    need(r, len)?;
    let s = String::from_utf8_lossy(&r[..len]).into_owned();
    r.advance(len);
    Ok(Some(s))
}

pub fn array<T>(
    r: &mut &[u8],
    mut item: impl FnMut(&mut &[u8]) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let len = i32_(r)?;
    if len < 0 {
        return Ok(Vec::new());
    }
    // Each element is at least 4 bytes: a count larger than what is left is garbage.
    need(r, len as usize)?;
    (0..len).map(|_| item(r)).collect()
}

/// A `BYTES` field: an `i32` length, then that many bytes (a null, `-1`, is empty).
pub fn bytes(r: &mut &[u8]) -> Result<Vec<u8>, String> {
    let len = i32_(r)?;
    if len < 0 {
        return Ok(Vec::new());
    }
    let len = len as usize;
    need(r, len)?;
    let out = r[..len].to_vec();
    r.advance(len);
    Ok(out)
}
