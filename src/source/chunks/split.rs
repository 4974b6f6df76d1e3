//! The splitter cuts each input into chunks of whole lines, follows header lines so that each
//! chunk starts under the layouts in effect for it, and queues one receipt per chunk in order.

use std::io::{self, BufRead};
use std::sync::mpsc::{SyncSender, sync_channel};

use super::{Job, Receipt, Source};
use crate::decode::{Layout, LayoutSet};
use crate::source::file::{header_layout, may_be_header};

/// Runs the splitter: it cuts every input into chunks of whole lines and queues them, each with
/// the layouts the header lines before it set.
pub(super) fn split(
    sources: Vec<Source>,
    chunk_bytes: usize,
    jobs: &SyncSender<Job>,
    receipts: &SyncSender<Receipt>,
) {
    for (input, source) in sources.into_iter().enumerate() {
        let mut layouts: Option<LayoutSet> = None;
        let mut send = |text: Vec<u8>| {
            let started_under = layouts.clone();
            if let Some(header) = last_header(&text) {
                layouts = Some(LayoutSet::single(header));
            }
            let (reply, parsed) = sync_channel(1);
            jobs.send(Job { input, text, started_under, reply }).is_ok()
                && receipts.send(Receipt::Chunk(parsed)).is_ok()
        };
        let live = source.live;
        let read = (source.open)().and_then(|mut r| cut(&mut *r, chunk_bytes, live, &mut send));
        match read {
            Ok(true) => {}
            // The consumer has gone, so there is nothing more to do.
            Ok(false) => return,
            Err(error) => {
                if receipts.send(Receipt::Failed { input, error }).is_err() {
                    return;
                }
            }
        }
    }
    let _ = receipts.send(Receipt::End);
}

/// The layout of the last header line in `text`, found as [`FileReader`] finds them
/// ([`header_layout`]).
fn last_header(text: &[u8]) -> Option<Layout> {
    let starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', text).map(|end| end + 1));
    // The search runs from the end, and only lines that may be headers have their end looked
    // for.
    let starts = starts.filter(|&s| may_be_header(&text[s..]));
    starts
        .filter_map(|start| {
            let line = &text[start..];
            header_layout(&line[..memchr::memchr(b'\n', line).unwrap_or(line.len())])
        })
        .next_back()
}

/// Cuts one input into chunks of about `chunk_bytes` that end at a line's end (the last may
/// end without one); a `live` input also sends its whole lines whenever a read has drained
/// what was available. Returns `Ok(false)` once `send` refuses a chunk. On a read error, the
/// whole lines read before it are sent first.
fn cut(
    input: &mut dyn BufRead,
    chunk_bytes: usize,
    live: bool,
    send: &mut impl FnMut(Vec<u8>) -> bool,
) -> io::Result<bool> {
    let chunk_bytes = chunk_bytes.max(1);
    let mut chunk = Vec::with_capacity(chunk_bytes);
    let mut target = chunk_bytes;
    // Sends the whole lines of `chunk`, keeping the partial last one.
    let send_lines = |chunk: &mut Vec<u8>, send: &mut dyn FnMut(Vec<u8>) -> bool| {
        let Some(end) = memchr::memrchr(b'\n', chunk) else { return true };
        let mut next = Vec::with_capacity(chunk_bytes.max(chunk.len() - end));
        next.extend_from_slice(&chunk[end + 1..]);
        chunk.truncate(end + 1);
        send(std::mem::replace(chunk, next))
    };
    loop {
        let buffered = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if let Some(end) = memchr::memrchr(b'\n', &chunk) {
                    chunk.truncate(end + 1);
                    if !send(chunk) {
                        return Ok(false);
                    }
                }
                return Err(e);
            }
        };
        if buffered.is_empty() {
            return Ok(chunk.is_empty() || send(chunk));
        }
        let take = buffered.len().min(target - chunk.len());
        let drained = take == buffered.len();
        chunk.extend_from_slice(&buffered[..take]);
        input.consume(take);
        if chunk.len() >= target {
            if memchr::memrchr(b'\n', &chunk).is_none() {
                // One line is longer than a chunk, so reading goes on until it ends.
                target = target.saturating_mul(2);
                continue;
            }
            if !send_lines(&mut chunk, send) {
                return Ok(false);
            }
            target = chunk_bytes.max(chunk.len() + 1);
        } else if live && drained && !send_lines(&mut chunk, send) {
            // The next read may wait for input: what has arrived goes on now.
            return Ok(false);
        }
    }
}
