//! The protobuf codec of the generated client and server: prost's, with a
//! smaller first buffer per call than tonic's 8 KiB. Every open stream keeps
//! its encode buffer for as long as it is open, so that tens of thousands of
//! mostly idle subscriptions would hold 8 KiB each before sending anything;
//! the buffer still grows to whatever a message needs. A stream also hands
//! its encoded bytes on every 4 KiB (tonic's 32 KiB): what a stream encoded
//! waits in its HTTP/2 send buffer until the client reads, so that this
//! bounds what each of many streams holds while events flow.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// A call's first encode and decode buffer.
const FIRST_BUFFER: usize = 1024;
/// How much a stream encodes before it hands the bytes on. 10,000 live-tail
/// streams getting 1,000 events of 1 KB peaked at 345-386 MiB with 4 KiB,
/// 475-509 MiB with 8 KiB, at the same instructions per delivered event
/// (BENCHMARKS.md).
const YIELD_THRESHOLD: usize = 4 * 1024;

/// prost's codec with [`FIRST_BUFFER`]-sized first buffers.
#[derive(Debug, Clone)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(FIRST_BUFFER, YIELD_THRESHOLD)
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
