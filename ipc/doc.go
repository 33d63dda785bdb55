// Package ipc connects two processes through a pair of ycq queues in shared
// memory: "up" carries records from the client to the server, "down" from the
// server to the client. The server creates the four regions (metadata and
// data for each queue, each its own memfd or /dev/shm file) for every client
// that connects to its UNIX socket, and passes their descriptors with
// SCM_RIGHTS, or their names; after that the socket carries only a short
// control exchange and tells each side when the other is gone.
//
// A client asks for a role: producer (the server consumes), consumer (the
// server produces), or both (the server echoes each record back). Records
// carry a sequence number, a send time and a checksum, so either side proves
// that nothing was lost, duplicated, reordered or corrupted, and the
// receiver measures latency.
//
// # Failure
//
// When the peer process dies, even by SIGKILL while it holds reserved slots,
// the survivor sees its socket close, stops waiting, takes whatever records
// were published before the death, and reports an error wrapping ErrPeerGone
// with what was and was not completed. Slots the dead peer held stay
// unusable: the queue pair belongs to that session and is discarded with it.
// A peer that writes garbage into the shared metadata makes the survivor's
// operations fail with ring.ErrCorrupt.
package ipc
