// Package dma allocates and maps memory that a peer can reach: another
// process, or a device. It knows nothing of rings or devices.
//
// A Region is one mapping with one owner. Kinds:
//
//   - Anonymous: private to this process (and to a device once mapped into
//     its IOMMU).
//   - Memfd: an anonymous file whose descriptor can be passed to another
//     process over a UNIX socket (package internal/fdpass), which maps it
//     with Map.
//   - CreateShm / OpenShm: a file under /dev/shm, found by name.
//
// Anonymous and Memfd regions can be backed by 2 MiB huge pages
// (Options.Huge). When the system has none reserved they fall back to
// normal pages and say why (Region.HugeFallback), instead of failing.
//
// Close unmaps the region and closes its descriptor; it is safe to call
// twice. A Region's methods are safe for concurrent use, but the caller
// must not touch Bytes after Close. Constructors release what they acquired
// when a later step fails.
package dma
