// Package testenv holds the helpers ycq's tests share: what a test needs
// from the machine (root, /dev/vfio, a PCI device, QEMU) and how it skips
// or fails without it; the QEMU environment a test binary provisions once;
// helper processes (the test binary re-run as a child); descriptor counts
// for leak checks; and polling.
//
// # Requirements
//
// A test that needs something the machine may lack calls Missing with a
// name ("root", "vfio", "pci", "qemu") and a reason that says the fix. It
// skips, unless YCQ_REQUIRE names it (a comma-separated list, or "all"):
// then it fails, so that a run that is meant to have it (CI on a prepared
// machine, the QEMU guest) cannot pass by skipping. QEMU tests are stricter:
// without a guest they fail unless YCQ_SKIP_QEMU=1 (see QEMU).
//
// # Concurrency and ownership
//
// Missing, Required, SkipQEMU, OpenFDs and WaitFor may be called from any
// test goroutine. A QEMU value is shared by every test of a binary and is
// safe for concurrent use. A Child belongs to the test that started it and
// is killed and reaped when that test ends; its output buffer is safe to
// read while the child writes it.
//
// The package imports nothing of ycq, so any package's tests can use it,
// the qemu package's own included (QEMU is generic over the environment).
package testenv
