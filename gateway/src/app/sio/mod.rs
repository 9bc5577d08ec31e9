//! Socket.IO: Engine.IO 4 ([`engine`]) carrying Socket.IO 5 ([`packet`]) at `/socket.io/`.
//! Both codecs are sans-IO.

pub mod engine;
pub mod packet;
