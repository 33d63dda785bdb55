//go:build !(ppc64 || ppc64le || mips || mipsle || mips64 || mips64le)

package kernel

// Direction bits of the generic ioctl encoding
// (include/uapi/asm-generic/ioctl.h), used by x86, arm, riscv, loongarch
// and s390.
const (
	_IOC_NONE     = 0
	_IOC_DIRSHIFT = 30
)
