// Package qemu provisions and runs a real Linux guest under QEMU for ycq's
// end-to-end tests, on a machine without KVM.
//
// # Provisioning
//
// provision.sh (embedded; Provision runs it) makes, under one cache
// directory ($YCQ_CACHE, default $HOME/.cache/ycq):
//
//	trixie-root/  Debian 13 minbase root with QEMU from trixie-backports,
//	              the first Debian QEMU with the vfio-user-pci device
//	kernel/       the unpacked Debian 13 kernel package:
//	              boot/vmlinuz-<ver>, lib/modules/<ver>/ with modules.dep
//	stamps/       one file per finished step
//
// Locate finds such a cache without running anything. QEMU runs from the
// root without chroot, through the root's own dynamic loader (Env.Command).
//
// # Guests
//
// A guest is the Debian kernel plus an initramfs that BuildInitramfs packs
// from Files: typically BaseFiles, a static Go program from GoBuild as
// /init (written with package github.com/ycq-dev/ycq/qemu/guest), and kernel modules from
// Env.ModuleFiles. Env.Boot runs it under TCG with the serial console
// captured, until the guest powers off or the context ends.
//
// # Concurrency and ownership
//
// An Env is read-only and may be shared. Each Boot owns its QEMU process
// (in its own process group, killed when the context ends) and its
// temporary files, and releases both before it returns; concurrent Boots
// are independent. Provision serializes runs on one cache with a lock file
// inside it.
package qemu
