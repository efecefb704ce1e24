//! `Body`: the one body type of requests and responses, streaming in both directions.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, TryStreamExt};
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};

use crate::BoxError;

/// A streaming HTTP body. A request's body arrives as the client sends it; a response's body may be
/// a value or a stream that is written out as it produces chunks.
pub struct Body(UnsyncBoxBody<Bytes, BoxError>);

impl Body {
    /// A body with no bytes.
    pub fn empty() -> Self {
        Self::new(Empty::new())
    }

    /// Wraps any `http_body::Body` whose errors convert into [`BoxError`].
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self(body.map_err(Into::into).boxed_unsync())
    }

    /// A body that streams the chunks of `stream` as they come; an `Err` item aborts the response.
    pub fn from_stream<S, D, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<D, E>> + Send + 'static,
        D: Into<Bytes>,
        E: Into<BoxError> + 'static,
    {
        Self::new(StreamBody::new(
            stream
                .map_ok(|data| Frame::data(data.into()))
                .map_err(Into::into),
        ))
    }

    /// The body as a stream of data chunks, trailers skipped.
    pub fn into_data_stream(self) -> impl Stream<Item = Result<Bytes, BoxError>> + Send {
        self.0.into_data_stream()
    }

    /// Reads the whole body into memory, refusing bodies longer than `limit` bytes.
    ///
    /// # Errors
    /// [`BodyTooLarge`] when the body is longer than `limit`, or the error reading it failed with.
    pub async fn collect_bytes(mut self, limit: usize) -> Result<Bytes, BoxError> {
        let mut collected = BytesMut::new();
        while let Some(frame) = self.0.frame().await {
            if let Ok(data) = frame?.into_data() {
                if collected.len() + data.len() > limit {
                    return Err(Box::new(BodyTooLarge { limit }));
                }
                collected.extend_from_slice(&data);
            }
        }
        Ok(collected.freeze())
    }
}

/// The error of [`Body::collect_bytes`] for a body longer than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTooLarge {
    /// The limit, in bytes.
    pub limit: usize,
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "body longer than {} bytes", self.limit)
    }
}

impl std::error::Error for BodyTooLarge {}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("size_hint", &http_body::Body::size_hint(&self.0))
            .finish()
    }
}

macro_rules! body_from {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Body {
            fn from(value: $ty) -> Self {
                Self::new(Full::new(Bytes::from(value)))
            }
        }
    )*};
}
body_from!(Bytes, Vec<u8>, String, &'static str, &'static [u8]);
