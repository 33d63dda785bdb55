package ring

// Pause busy-waits n PAUSE instructions (tens of cycles each), the spin
// step DPDK's rte_pause and the Go runtime's procyield use: it tells the
// core a spin loop is running and keeps the waiter off the cache line it
// polls for longer than Spin does. In a virtual machine a long run of them
// may make the hypervisor deschedule the vCPU, so keep n small and yield
// after a few rounds.
func Pause(n int) { pause(n) }

// Implemented in spin_amd64.s.
//
//go:noescape
func pause(n int)
