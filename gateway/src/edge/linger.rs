//! The layer that lets an HTTP/2 request to the plain HTTP routes finish
//! arriving after it was answered. A route answers some requests before
//! reading their bodies (401 without a token, 415, 404...); the HTTP/2
//! library then resets the stream (RST_STREAM, NO_ERROR) as soon as the
//! answer is out. RFC 9113 allows that, but a client still sending its body
//! may take the reset for a failure and drop the answer (curl 7.x: "(92)
//! Stream error in the HTTP/2 framing layer", or "(52) Empty reply from
//! server"). So what is left of such a body is read and dropped, up to
//! a bound (the largest message) and for at most [`LINGER`], before the stream is
//! let go: a client mid-send ends cleanly with its answer, and one that
//! sends on and on is reset as before.
//!
//! HTTP/1.1 needs none of it: there the library closes the connection
//! after an answer to a request whose body it did not read.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tonic::body::Body;
use tower::util::MapRequestLayer;

/// The longest a body is read after its answer went out.
const LINGER: Duration = Duration::from_secs(1);

/// Lets request bodies finish arriving, reading at most `max_bytes` of one
/// after its answer: see the module.
pub(crate) fn linger(
    max_bytes: usize,
) -> MapRequestLayer<impl Fn(http::Request<Body>) -> http::Request<Body> + Clone> {
    MapRequestLayer::new(move |request: http::Request<Body>| {
        if request.version() != http::Version::HTTP_2 {
            return request;
        }
        request.map(|body| {
            Body::new(Lingering {
                body: Some(body),
                max_bytes,
            })
        })
    })
}

/// A request body that, dropped before its end, is read to its end (within
/// bounds) by a task of its own.
struct Lingering {
    body: Option<Body>,
    max_bytes: usize,
}

impl HttpBody for Lingering {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        match self.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        // Dropped outside the runtime (at shutdown): let the stream go.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body, self.max_bytes));
        }
    }
}

/// Reads `body` and drops what it reads, until its end, `max_bytes`, an
/// error or [`LINGER`], whichever comes first.
async fn drain(mut body: Body, max_bytes: usize) {
    let reading = async {
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            read = read.saturating_add(frame.data_ref().map_or(0, Bytes::len));
            if read > max_bytes {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, reading).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body whose sender sends `chunks` then ends, or holds on forever.
    fn channel_body() -> (
        tokio::sync::mpsc::Sender<Result<Frame<Bytes>, tonic::Status>>,
        Body,
    ) {
        let (sender, receiver) = tokio::sync::mpsc::channel(8);
        let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
        (sender, Body::new(http_body_util::StreamBody::new(stream)))
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_is_read_to_its_end() {
        let (sender, body) = channel_body();
        drop(Lingering {
            body: Some(body),
            max_bytes: 100,
        });
        // The drain takes what is sent after the drop, then sees the end.
        for _ in 0..3 {
            let sent = sender.send(Ok(Frame::data(Bytes::from_static(b"0123456789"))));
            sent.await.expect("the body is still read");
        }
        drop(sender);
    }

    #[tokio::test]
    async fn reading_stops_past_max_bytes() {
        let (sender, body) = channel_body();
        drop(Lingering {
            body: Some(body),
            max_bytes: 15,
        });
        let chunk = || Ok(Frame::data(Bytes::from_static(b"0123456789")));
        sender.send(chunk()).await.unwrap();
        sender.send(chunk()).await.unwrap();
        // 20 bytes read, over 15: the body is let go.
        sender.closed().await;
    }

    #[tokio::test(start_paused = true)]
    async fn reading_stops_after_linger() {
        let (sender, body) = channel_body();
        drop(Lingering {
            body: Some(body),
            max_bytes: 100,
        });
        let started = tokio::time::Instant::now();
        sender.closed().await;
        assert_eq!(started.elapsed(), LINGER);
    }
}
