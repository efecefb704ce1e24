//! FileSync.DiffCopy, sender side: the daemon asks for a local dir (`context`, `dockerfile`), we
//! send a STAT per entry, then the contents of each file it requests, until it says FIN.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::fs::patterns::Filter;
use crate::fs::{follow, walk, Walked};
use crate::proto::filesync::file_sync_server::FileSync;
use crate::proto::fs::packet::PacketType;
use crate::proto::fs::Packet;
use crate::SourceTree;

/// DATA chunk size, as Go's sender reads.
const DATA_CHUNK: usize = 32 * 1024;
/// Files streamed at once, as Go's sender does.
const FILES_IN_PARALLEL: usize = 4;
/// Packets queued towards the daemon; bounds memory while HTTP/2 flow control holds us back.
const OUTBOUND_QUEUE: usize = 64;

type Outbound = mpsc::Sender<Result<Packet, Status>>;

pub(super) struct FileSyncService {
    sources: Arc<HashMap<String, Arc<dyn SourceTree>>>,
}

impl FileSyncService {
    pub(super) fn new(sources: HashMap<String, Arc<dyn SourceTree>>) -> Self {
        Self {
            sources: Arc::new(sources),
        }
    }
}

#[tonic::async_trait]
impl FileSync for FileSyncService {
    type DiffCopyStream = ReceiverStream<Result<Packet, Status>>;

    async fn diff_copy(
        &self,
        req: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let metadata = req.metadata();
        let dir = values(metadata, "dir-name")
            .into_iter()
            .next()
            .unwrap_or_default();
        let tree = self
            .sources
            .get(&dir)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no access allowed to dir {dir:?}")))?;
        // fsutil adds follow paths to the include patterns, and with them the symlinks on their
        // way and where they lead (the frontend follows the Dockerfile, which may be a link).
        let mut include = values(metadata, "include-patterns");
        let follow = values(metadata, "followpaths");
        include.extend(follow.iter().cloned());
        let exclude = values(metadata, "exclude-patterns");
        let filter = Filter::new(&include, &exclude)
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        tracing::debug!(dir, ?include, ?exclude, "daemon requested a local dir");
        let selection = Selection {
            include,
            follow,
            exclude,
            filter,
        };

        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        tokio::spawn(send(tree, selection, req.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type TarStreamStream = ReceiverStream<Result<Packet, Status>>;

    async fn tar_stream(
        &self,
        _req: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::TarStreamStream>, Status> {
        Err(Status::unimplemented(
            "only the diffcopy protocol is served",
        ))
    }
}

/// The values of a metadata key, each URL-query-unescaped when the daemon says it encoded them
/// (`<key>-encoded: 1`, BuildKit v0.12+, for non-ASCII patterns).
fn values(metadata: &MetadataMap, key: &str) -> Vec<String> {
    let encoded = metadata
        .get(format!("{key}-encoded"))
        .and_then(|v| v.to_str().ok())
        == Some("1");
    metadata
        .get_all(key)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            if encoded {
                query_unescape(v)
            } else {
                v.to_owned()
            }
        })
        .collect()
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte; a malformed escape is kept as is.
fn query_unescape(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(hi, lo)| (hi * 16 + lo) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, other) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the daemon asked for: its patterns, and the filter made of them.
struct Selection {
    include: Vec<String>,
    follow: Vec<String>,
    exclude: Vec<String>,
    filter: Filter,
}

impl Selection {
    /// The filter, with the paths that the follow paths lead to through symlinks included.
    fn resolve(self, tree: &dyn SourceTree) -> Result<Filter, String> {
        let extra: Vec<String> = self.follow.iter().flat_map(|p| follow(tree, p)).collect();
        if extra.is_empty() {
            return Ok(self.filter);
        }
        let mut include = self.include;
        include.extend(extra);
        Filter::new(&include, &self.exclude).map_err(|err| err.to_string())
    }
}

/// The whole exchange for one DiffCopy call. Ends when the daemon sends FIN (answered with FIN),
/// an error, or goes away; a local failure is reported to it as an ERR packet.
async fn send(
    tree: Arc<dyn SourceTree>,
    selection: Selection,
    mut inbound: Streaming<Packet>,
    tx: Outbound,
) {
    let listing = {
        let tree = Arc::clone(&tree);
        tokio::task::spawn_blocking(move || {
            let filter = selection.resolve(tree.as_ref())?;
            walk(tree.as_ref(), &filter).map_err(|err| err.to_string())
        })
        .await
    };
    let listing = match listing {
        Ok(Ok(listing)) => listing,
        Ok(Err(err)) => return send_err(&tx, &format!("walking the context: {err}")).await,
        Err(err) => return send_err(&tx, &format!("walking the context: {err}")).await,
    };
    // Requestable ids: the STAT index of each regular file; each may be requested once.
    let mut files: HashMap<u32, String> = listing
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.is_file)
        .map(|(id, entry)| (id as u32, entry.stat.path.clone()))
        .collect();

    // STATs go out while requests come in: the daemon may ask for a file before the listing ends.
    let stats = tokio::spawn(send_stats(listing, tx.clone()));
    // A few blocking workers take requested files from a queue, as Go's sender does. The queue
    // never blocks this loop: the daemon's writer may be blocked sending its next REQ until we
    // read it, and stop reading our DATA meanwhile.
    let (queue, requests) = std::sync::mpsc::channel::<(u32, String)>();
    let requests = Arc::new(Mutex::new(requests));
    let workers: Vec<_> = (0..FILES_IN_PARALLEL)
        .map(|_| {
            let (tree, tx, requests) = (Arc::clone(&tree), tx.clone(), Arc::clone(&requests));
            tokio::task::spawn_blocking(move || loop {
                let next = requests
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .recv();
                let Ok((id, path)) = next else { return };
                send_file(tree.as_ref(), id, &path, &tx);
            })
        })
        .collect();
    loop {
        let packet = match inbound.message().await {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(message = status.message(), "daemon ended the transfer");
                break;
            }
        };
        match PacketType::try_from(packet.r#type) {
            Ok(PacketType::PacketReq) => {
                let Some(path) = files.remove(&packet.id) else {
                    return send_err(&tx, &format!("invalid file id {}", packet.id)).await;
                };
                let _ = queue.send((packet.id, path));
            }
            Ok(PacketType::PacketFin) => {
                let _ = stats.await;
                drop(queue);
                for worker in workers {
                    let _ = worker.await;
                }
                let fin = Packet {
                    r#type: PacketType::PacketFin.into(),
                    ..Packet::default()
                };
                let _ = tx.send(Ok(fin)).await;
                return;
            }
            Ok(PacketType::PacketErr) => {
                tracing::warn!(error = %String::from_utf8_lossy(&packet.data), "daemon aborted the transfer");
                break;
            }
            _ => return send_err(&tx, &format!("unexpected packet type {}", packet.r#type)).await,
        }
    }
    // Workers stop after their current file once the queue is gone.
    stats.abort();
}

async fn send_stats(listing: Vec<Walked>, tx: Outbound) {
    for entry in listing {
        let stat = Packet {
            r#type: PacketType::PacketStat.into(),
            stat: Some(entry.stat),
            ..Packet::default()
        };
        if tx.send(Ok(stat)).await.is_err() {
            return;
        }
    }
    // The listing ends with a STAT whose stat is absent, not empty.
    let _ = tx
        .send(Ok(Packet {
            r#type: PacketType::PacketStat.into(),
            ..Packet::default()
        }))
        .await;
}

/// Streams one file in DATA chunks, then an empty DATA for its end. Runs on a blocking thread.
fn send_file(tree: &dyn SourceTree, id: u32, path: &str, tx: &Outbound) {
    let data = |bytes: Vec<u8>| {
        Ok(Packet {
            r#type: PacketType::PacketData.into(),
            id,
            data: bytes,
            ..Packet::default()
        })
    };
    // A file that cannot be opened arrives empty, as with Go's sender.
    if let Ok(mut file) = tree.open(path) {
        loop {
            // Read straight into the packet's buffer: no zeroing, no copy.
            let mut chunk = Vec::with_capacity(DATA_CHUNK);
            match (&mut file).take(DATA_CHUNK as u64).read_to_end(&mut chunk) {
                Ok(0) => break,
                Ok(_) => {
                    if tx.blocking_send(data(chunk)).is_err() {
                        return;
                    }
                }
                Err(err) => {
                    let message = format!("reading {path}: {err}");
                    let _ = tx.blocking_send(Ok(err_packet(&message)));
                    return;
                }
            }
        }
    } else {
        tracing::warn!(path, "could not open a requested file; sending it empty");
    }
    let _ = tx.blocking_send(data(Vec::new()));
}

fn err_packet(message: &str) -> Packet {
    Packet {
        r#type: PacketType::PacketErr.into(),
        data: message.as_bytes().to_vec(),
        ..Packet::default()
    }
}

async fn send_err(tx: &Outbound, message: &str) {
    tracing::warn!(error = message, "file transfer failed");
    let _ = tx.send(Ok(err_packet(message))).await;
}

#[cfg(test)]
mod tests {
    use super::query_unescape;

    #[test]
    fn unescapes_like_go_query_unescape() {
        assert_eq!(query_unescape("caf%C3%A9+bar"), "café bar");
        assert_eq!(query_unescape("100%"), "100%");
        assert_eq!(query_unescape("%zz"), "%zz");
        assert_eq!(query_unescape("plain/path"), "plain/path");
    }
}
