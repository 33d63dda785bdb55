// Package guest is the inside half of github.com/ycq-dev/ycq/qemu: helpers for a Go program
// that runs as /init in a guest that qemu.Env.Boot started. Such a program
// has no libc, no udev and no shell: Setup mounts what it needs, LoadModules
// loads the kernel modules that qemu.Env.ModuleFiles put in the image, and
// PowerOff ends the guest, which ends QEMU.
//
// Everything here runs in the guest's single init process; nothing is safe
// to call from several goroutines at once.
package guest

// ModuleList is where the image lists the modules LoadModules loads, one
// guest path a line, each after its dependencies. qemu.Env.ModuleFiles
// writes it (as qemu.GuestModuleList).
const ModuleList = "/etc/ycq/modules"
