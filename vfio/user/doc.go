// Package user is the vfio-user protocol: the wire format (wire*.go,
// capabilities.go), the message transport over a UNIX socket with
// descriptors (conn.go), and a client (client*.go) that implements
// vfio.Device, so the host driver can drive a vfio-user device. The server
// is in package devicemodel.
//
// # Scope
//
// In: the header (DecodeHeader, Header.Encode, reply and error-reply
// headers, EncodeMessage/StartMessage/FinishMessage to fill msg_size), the
// command ids, and the request and reply payloads of VERSION (with its JSON
// capabilities), DMA_MAP, DMA_UNMAP, DEVICE_GET_INFO, DEVICE_GET_REGION_INFO
// (with the sparse mmap and type capabilities), DEVICE_GET_IRQ_INFO,
// DEVICE_SET_IRQS, REGION_READ, REGION_WRITE, REGION_WRITE_MULTI, DMA_READ,
// DMA_WRITE, DEVICE_FEATURE and MIG_DATA_READ/WRITE. DEVICE_RESET has no
// payload either way; an error reply is a header alone (ErrorReplyTo).
//
// The wire format does no I/O. Fds travel as SCM_RIGHTS next to a message,
// so reading and writing messages belongs to the socket layer (Conn): it
// reads HeaderSize bytes, calls DecodeHeader and Header.CheckSize, reads
// Header.PayloadLen more bytes and hands them to the decoder for that
// command. Semantic checks (does a DMA range overlap
// another, is a region index in range, is a count within the negotiated
// max_data_xfer_size) belong to the server and client. The
// DEVICE_GET_REGION_IO_FDS payload is not modelled (QEMU does not send it).
//
// The wire_*.go files own the binary layouts, one message family each,
// with named sizes and offsets (wire.go holds what they share);
// capabilities.go owns the VERSION JSON text.
//
// # Decoding rules
//
// Decoders take the payload (the bytes after the header) and treat it as
// hostile. They check every length, count and pointer against the bytes
// actually present before using it, never allocate more than the payload's
// length justifies, never panic, and report a *ProtocolError that unwraps
// to ErrMalformed. Where implementations differ, the rules are:
//
//   - A fixed-size payload may be longer than its struct (rust-vmm sends a
//     20-byte DEVICE_GET_INFO); the extra bytes are ignored. An argsz
//     smaller than the fixed part is refused.
//   - A payload whose tail is the data a count describes (REGION_READ
//     reply, REGION_WRITE request, DMA_READ reply, DMA_WRITE request,
//     REGION_WRITE_MULTI, MIG_DATA) must hold exactly that many bytes: a
//     mismatch means the peers disagree about framing.
//   - A region info reply whose argsz exceeds the payload is the "retry
//     with a bigger buffer" answer: its capability chain is not walked.
//     Unknown capabilities are kept raw; the last one's length is unknown.
//   - Unknown commands and reserved header flag bits are accepted by
//     DecodeHeader so a server can answer them with an error reply; a
//     type nibble other than command or reply is refused.
//
// DMA_READ and DMA_WRITE come in two layouts, the specification's and
// QEMU's (see DMAWire); their encoders and decoders take the layout as an
// argument.
//
// # Encoding
//
// Encoders append to a caller's slice and allocate only when it grows. They
// write values as given, so tests can build hostile messages, except that a
// zero ArgSz means the natural size. They fail (vfio.ErrInvalid) only when
// a value cannot be represented: data longer than its count field, a QEMU
// DMA count above 2^32-1, a capability chain that cannot be placed.
//
// # Concurrency and memory ownership
//
// Every function is pure: it reads its arguments and touches nothing else,
// so any number of goroutines may encode and decode at once. Decoded values
// do not copy payload data: Data fields of RegionData, DMA replies and
// requests, IRQSet, DeviceFeature, MigData and RawRegionCap alias the
// payload slice, so they are valid only as long as the caller keeps that
// buffer unchanged; copy them to keep them longer. Fixed fields, sparse
// areas, write-multi entries and capabilities are copies.
package user
