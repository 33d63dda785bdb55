//go:build !amd64

package ring

// Pause busy-waits n steps; without a PAUSE routine here it is Spin.
func Pause(n int) { Spin(n) }
